"""`sfp-server logs` and `sfp-server logs export`: the inventory side of the logs library.

The library (installer.logs) reads, merges, filters, masks, prints and exports container logs of
one org on one Docker engine. What this module adds is what only the inventory knows:

  * where the org's Docker engine is: its inventory host's connection variables. An org with
    `ansible_connection: local` (or `ansible_host` localhost / 127.0.0.1 / ::1) is read on this
    machine; any other through `ssh://<ansible_user>@<ansible_host>:<ansible_port>` with
    `ansible_ssh_private_key_file`, never prompting, and with host key checking as Ansible does
    it: on (the user's known_hosts, or a `-o UserKnownHostsFile=` in ansible_ssh_common_args /
    ansible_ssh_extra_args), off only when `ansible_host_key_checking: false` says so;
  * the org's own secrets (its vault), handed to the masker so they never print;
  * where exports go: `sfp_org.logs.export` (S3 endpoint, bucket, prefix, retention), with the S3
    keys from the vault (LOGS_S3_ACCESS_KEY_ID / LOGS_S3_SECRET_ACCESS_KEY) or, without them,
    the AWS_* environment (boto3's usual chain).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from ..context import OrgContext
from ..errors import SfpError
from ..inventory import Org
from ..logs import (
    DockerEndpoint,
    ExportResult,
    LogQuery,
    S3Target,
    StoredExport,
    apply_retention,
    export_logs,
    run_logs,
)
from ..logs import config as logs_config
from ..logs.config import ExportSettings

ACCESS_KEY = "LOGS_S3_ACCESS_KEY_ID"
SECRET_KEY = "LOGS_S3_SECRET_ACCESS_KEY"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Vault entries that are not secret and would mask ordinary text (the dashboard user is "supabase",
# the issue time is a number like any other, a grace period's end a date): left out of the masker's list of known values.
NOT_SECRET = {"DASHBOARD_USERNAME", "API_KEYS_ISSUED_AT", "JWT_JWKS", "JWT_SIGNING_MODE", "BACKUP_RECOVERY_RECIPIENT",
              "API_KEYS_PREVIOUS_UNTIL", "JWT_SIGNING_KEY_PREVIOUS_UNTIL"}


# -- where the org runs ------------------------------------------------------------------------
def _ssh_args(hostvars: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        value = hostvars.get(var)
        if isinstance(value, str) and value.strip():
            try:
                args += shlex.split(value)
            except ValueError:
                raise SfpError(f"cannot read {var} of the org's host: {value!r}", "fix its quoting") from None
    return args


def _ssh_option(args: list[str], name: str) -> str | None:
    """The value of `-o Name=value` (or `-oName=value`) in ssh arguments, the last one winning."""
    found = None
    for i, a in enumerate(args):
        opt = a[2:] if a.startswith("-o") and len(a) > 2 else (args[i + 1] if a == "-o" and i + 1 < len(args) else None)
        if opt is None:
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, _, value = opt.partition(" ")
        if key.strip().lower() == name.lower():
            found = value.strip()
    return found


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    return None


def is_local(org: Org) -> bool:
    hv = org.hostvars
    if str(hv.get("ansible_connection", "")) == "local":
        return True
    return str(hv.get("ansible_host") or org.name) in LOCAL_HOSTS


def endpoint_for(org: Org) -> DockerEndpoint:
    """The org's Docker engine, from its inventory host's connection variables."""
    if is_local(org):
        return DockerEndpoint()
    hv = org.hostvars
    connection = str(hv.get("ansible_connection") or "ssh")
    if connection not in ("ssh", "smart", "paramiko", "paramiko_ssh"):
        raise SfpError(f"org {org.name!r} is reached with ansible_connection {connection!r}",
                       "logs are read over SSH or on this machine (ansible_connection: local)")
    host = str(hv.get("ansible_host") or org.name)
    if "{{" in host:
        raise SfpError(f"the ansible_host of {org.name!r} is a template ({host})", "write the address itself")
    user = hv.get("ansible_user") or hv.get("ansible_ssh_user")
    port = hv.get("ansible_port") or hv.get("ansible_ssh_port")
    key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
    netloc = f"[{host}]" if ":" in host else host
    url = f"ssh://{f'{user}@' if user else ''}{netloc}{f':{int(port)}' if port else ''}"
    args = _ssh_args(hv)
    known_hosts = _ssh_option(args, "UserKnownHostsFile")
    strict = _ssh_option(args, "StrictHostKeyChecking")
    checking = _flag(hv.get("ansible_host_key_checking", hv.get("ansible_ssh_host_key_checking")))
    if checking is None:
        checking = _flag(os.environ.get("ANSIBLE_HOST_KEY_CHECKING"))
    if strict is not None and strict.lower() in ("no", "off"):
        checking = False
    if key:
        key = os.path.expanduser(str(key))
        if not Path(key).is_file():
            raise SfpError(f"the SSH key of {org.name!r} does not exist: {key}",
                           "fix ansible_ssh_private_key_file in the inventory")
    return DockerEndpoint(url, identity_file=key, known_hosts_file=os.path.expanduser(known_hosts) if known_hosts else None,
                          strict_host_key_checking=checking is not False, name=org.machine)


# -- masking -----------------------------------------------------------------------------------
def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str):
        yield value


def secret_values(ctx: OrgContext) -> list[str]:
    """The org's own secret values for the masker (JSON key sets also by their parts)."""
    values: list[str] = []
    for name, value in ctx.secrets.items():
        if name in NOT_SECRET or not value:
            continue
        values.append(value)
        if value[:1] in "[{":
            with contextlib.suppress(ValueError):
                values += [v for v in _leaves(json.loads(value)) if len(v) >= 16]
    return values


# -- reading -----------------------------------------------------------------------------------
def show(ctx: OrgContext, query: LogQuery, *, json_output: bool, follow: bool,
         out: IO[str] | None = None) -> int:
    """Print the org's logs (what `sfp-server logs` does); returns the exit code."""
    masked = secret_values(ctx)
    endpoint = endpoint_for(ctx.org)
    query.org = ctx.name
    return run_logs(query, endpoint=endpoint, secrets=masked, json_output=json_output, follow=follow, out=out)


# -- export ------------------------------------------------------------------------------------
def export_settings(org: Org) -> ExportSettings | None:
    """The org's `logs.export` store with its defaults (installer/schema/logs.yml), or None."""
    return logs_config.export_settings(org.raw.get("logs"), where=f"host_vars/{org.name}")


def s3_target(ctx: OrgContext) -> S3Target:
    """How to reach the org's export store: its `logs.export` settings and S3 keys (the vault's, or
    None for boto3's usual chain: AWS_* environment, ~/.aws, an instance role)."""
    org = ctx.org
    cfg = export_settings(org)
    values = ctx.secrets
    ak, sk = values.get(ACCESS_KEY), values.get(SECRET_KEY)
    if bool(ak) != bool(sk):
        missing = SECRET_KEY if ak else ACCESS_KEY
        raise SfpError(f"org {org.name!r} has only one of the two S3 keys for log exports in its vault",
                       f"{ctx.command('secrets', 'set', '--org', org.name, missing)} < FILE")
    return S3Target(bucket=cfg.bucket if cfg else "", prefix=cfg.prefix if cfg else "",
                    endpoint_url=(cfg.endpoint_url if cfg else None) or os.environ.get("AWS_ENDPOINT_URL_S3")
                    or os.environ.get("AWS_ENDPOINT_URL") or None,
                    region=(cfg.region if cfg else None) or None, path_style=bool(cfg and cfg.path_style),
                    access_key=ak or None, secret_key=sk or None)


def default_target(org: Org) -> str:
    cfg = export_settings(org)
    if not cfg or not cfg.bucket:
        raise SfpError(f"org {org.name!r} has no export store",
                       "pass --to FILE|DIR|s3://bucket/prefix, or add `logs: {export: {bucket: ...}}` to its sfp_org")
    return cfg.url


@dataclass
class ExportOutcome:
    result: ExportResult
    removed: list[StoredExport] = field(default_factory=list)
    retention: dict[str, Any] | None = None


def export(ctx: OrgContext, query: LogQuery, to: str | None) -> ExportOutcome:
    """Export a window of the org's logs; for an S3 target, then apply the org's retention policy
    (only to this org's exports under that prefix) and return what it removed. The logs block is
    read from the inventory: `ctx` must have been resolved with check=True."""
    org, o = ctx.name, ctx.org
    target = to or default_target(o)
    query.org = org
    s3 = s3_target(ctx) if target.startswith("s3://") else None
    endpoint = endpoint_for(o)
    try:
        result = export_logs(query, to=target, endpoint=endpoint, secrets=secret_values(ctx), s3=s3)
    finally:
        endpoint.close()
    outcome = ExportOutcome(result)
    cfg = export_settings(o)
    # The policy as written (keep_last and/or keep_days): what the command prints.
    retention = {k: v for k, v in asdict(cfg.retention).items() if v is not None} if cfg and cfg.retention else {}
    if s3 is not None and retention:
        where = result.archive.rsplit("/", 1)[0]  # the prefix the export went to
        try:
            outcome.removed = apply_retention(where, keep_last=retention.get("keep_last"),
                                              keep_days=retention.get("keep_days"), s3=s3, org=org)
        except Exception as exc:  # the export itself is complete; say why nothing was pruned
            raise SfpError(f"the export is complete ({result.manifest_location}) but retention failed: {exc}",
                           "check the store's delete permission; run the export again to retry") from None
        outcome.retention = retention
    return outcome
