"""One scheduled (or on-demand) backup of one org, run on the org's host.

    python -m installer.backup_job --config /opt/sfp/orgs/acme/backup/backup.json

The same code runs for `sfp-server backup run` on a local org (the controller builds the config
in memory) and for the schedule the `backup` role installs on the host (it renders the config
file, 0600, with the S3 keys and the org's secrets from the vault; nothing secret is on the
command line or in the crontab). After a successful set: retention (prune) and cleanup of
interrupted runs, then the Prometheus textfile metric is written by the library.

Config keys: org, org_dir, container, storage_dir, metrics_dir (optional), backup (the
`sfp_org.backup` block), keys (BACKUP_* values from the vault), org_config (`sfp_org`),
secrets (the org's secrets, which restore writes back so API keys stay valid), env_file. The
signing key (BACKUP_SIGNING_KEY) is read from `keys`, or from `secrets` where the role renders
the vault's values there; it signs the set and is never written into it.

`store.credentials.source: env` on a host: cron and systemd start the job without anyone's
shell environment, so the job reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
AWS_SESSION_TOKEN) from `env_file` (the setting sfp_org.backup.paths.env_file, default
/etc/sfp/backup-<org>.env, provisioned by the operator, 0600). Variables already set in the
environment win, so an operator running `backup run` on the controller may export them instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from . import backup_inventory
from .backup_inventory import NOT_IN_SETS, SIGNING_KEY
from .errors import SfpError

T = TypeVar("T")


@dataclass
class JobOutcome:
    org: str
    set_id: str
    size: int
    seconds: float
    objects: int
    pruned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Bytes per second (stored, encrypted bytes)."""
        return self.size / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"org": self.org, "set_id": self.set_id, "size_bytes": self.size, "duration_seconds": round(self.seconds, 3),
                "throughput_bytes_per_second": round(self.throughput), "objects": self.objects, "pruned": self.pruned,
                "warnings": self.warnings}


# installer.backup (boto3, pyrage, zstandard, pglast) is imported where a job uses it: this module is
# also imported by `sfp-server` for its helpers, and installer.backup adds about 220 ms of CPU to
# every start, `--help` included.


def settings_of(cfg: dict[str, Any]) -> Any:
    from .backup import parse_settings  # lazy: see above

    data = backup_inventory.settings_data(cfg["backup"], cfg.get("keys") or {})
    return parse_settings(data, source=f"{cfg['org']}: sfp_org.backup")


def deployed(org_dir: str | Path) -> dict[str, Any]:
    path = Path(org_dir) / "deployed.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


ENV_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def credentials_source(block: Any) -> str:
    store = block.get("store") if isinstance(block, dict) else None
    creds = store.get("credentials") if isinstance(store, dict) else None
    return str(creds.get("source", "instance")) if isinstance(creds, dict) else "instance"


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines (systemd EnvironmentFile / docker --env-file style; `export ` and quotes tolerated)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def load_env_file(cfg: dict[str, Any]) -> list[str]:
    """For `credentials.source: env`: the AWS_* variables the environment lacks, from cfg["env_file"]."""
    if credentials_source(cfg.get("backup")) != "env" or all(os.environ.get(n) for n in ENV_NAMES[:2]):
        return []
    path = Path(str(cfg.get("env_file") or ""))
    if not cfg.get("env_file") or not path.is_file():
        raise SfpError(f"{cfg.get('org')}: sfp_org.backup.store.credentials.source is env, but AWS_ACCESS_KEY_ID / "
                       f"AWS_SECRET_ACCESS_KEY are not set and the environment file {path} does not exist",
                       "write them to that file on the org's host (KEY=VALUE lines, mode 0600; the setting "
                       "sfp_org.backup.paths.env_file names another path), or use source: vault")
    mode = path.stat().st_mode & 0o077
    if mode:
        raise SfpError(f"{path} is readable by others (mode {oct(mode)}); it holds S3 keys", f"chmod 0600 {path}")
    loaded = []
    for key, value in parse_env_file(path.read_text()).items():
        if key in ENV_NAMES and value and not os.environ.get(key):
            os.environ[key] = value
            loaded.append(key)
    return loaded


def signing_key_of(cfg: dict[str, Any]) -> str:
    """The org's signing key from the job config; a config rendered before sets were signed has none."""
    key = (cfg.get("keys") or {}).get(SIGNING_KEY) or (cfg.get("secrets") or {}).get(SIGNING_KEY)
    if not key:
        org = cfg.get("org")
        raise SfpError(f"{org}: the backup job's config has no signing key ({SIGNING_KEY}), so its sets could not be "
                       "told from sets anyone with write access to the bucket could make; no set was written",
                       f"run `sfp-server install --org {org}`: it makes the org's signing key and renders the job config again")
    return str(key)


def set_secrets(cfg: dict[str, Any]) -> dict[str, str]:
    """The org's secrets a set carries: all but the recovery identity and the signing key."""
    return {str(k): str(v) for k, v in (cfg.get("secrets") or {}).items() if k not in NOT_IN_SETS}


def run(cfg: dict[str, Any], progress: Callable[[str], None] | None = None, *, client: Any = None) -> JobOutcome:
    from .backup import DockerExecDatabase, api  # lazy: see settings_of
    from .backup.retention import upgrade_pins

    say = progress or (lambda _m: None)
    org = str(cfg["org"])
    load_env_file(cfg)
    settings = settings_of(cfg)
    info = deployed(cfg["org_dir"])
    storage = Path(cfg["storage_dir"]) if cfg.get("storage_dir") else None
    if storage is not None and not storage.is_dir():
        storage = None
    metrics = Path(cfg["metrics_dir"]) if cfg.get("metrics_dir") else None
    if metrics is not None:
        metrics.mkdir(parents=True, exist_ok=True)
    try:
        signing_key = signing_key_of(cfg)
    except SfpError as exc:
        api.report_failure(settings, org, exc.message, metrics_dir=metrics)  # alert like any failed run
        raise
    say(f"backing up {org} to {settings.store.describe()} (database container {cfg['container']}"
        f"{', storage ' + str(storage) if storage else ''})")
    major = info.get("postgres_major")
    result = api.run_backup(
        settings, org, DockerExecDatabase(str(cfg["container"])), storage_dir=storage,
        org_config=cfg.get("org_config") or {}, secrets=set_secrets(cfg), signing_key=signing_key,
        release=info.get("release"), images=info.get("images") or None,
        postgres_major=int(major) if major not in (None, "") else None, metrics_dir=metrics, client=client,
        secret_ages={str(k): str(v) for k, v in (cfg.get("secret_ages") or {}).items()},
    )
    outcome = JobOutcome(org=org, set_id=result.set_id, size=result.size, seconds=result.seconds,
                         objects=len(result.manifest.objects), warnings=list(result.warnings))
    say(f"set {result.set_id} complete; applying retention")
    if cfg.get("prune", True):
        try:
            # The pre-upgrade set of an upgrade that can still be rolled back is kept (deployed.json's history).
            pins = upgrade_pins(info.get("history"))
            report = api.prune(settings.store, org, settings.retention, client=client, pinned=pins)
            outcome.pruned = list(report.deleted)
            outcome.warnings += [future_warning(org, set_id) for set_id in report.future]
            api.cleanup(settings.store, org, client=client)
        except SfpError as exc:  # the set is safe; a failed prune is reported, not fatal
            outcome.warnings.append(f"retention not applied: {exc.message}")
    return outcome


def future_warning(org: str, set_id: str) -> str:
    return (f"set {set_id} of {org} is dated in the future: it is not taken as latest and retention leaves it alone; "
            "check the clock of the host that made it, or whether someone else wrote it into the bucket "
            "(`sfp-server backup verify` checks its signature), then delete it")


def read_private_config(path: Path, holds: str) -> dict[str, Any]:
    """A job's JSON config, refused when others may read it (it holds `holds`)."""
    mode = path.stat().st_mode & 0o077
    if mode:
        raise SfpError(f"{path} is readable by others (mode {oct(mode)})", f"chmod 0600 it; it holds {holds}")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise SfpError(f"{path} is not a job config (a JSON object)", "render it again with the playbook")
    return data


def run_job(config: Path, holds: str, job: Callable[[dict[str, Any]], T], interrupted: str) -> tuple[int, T | None]:
    """Run an on-host job on its private config; failures become a message on stderr and an exit code.

    Returns (0, outcome), or (exit code, None) after printing why: an SfpError's own code, 130 when
    interrupted (SIGTERM included), 1 for an unreadable config or file.
    """
    raise_on_sigterm()
    try:
        return 0, job(read_private_config(config, holds))
    except SfpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code, None
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130, None
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1, None


def raise_on_sigterm() -> None:
    """SIGTERM (systemd stop, a timeout, kill) raises, so the library aborts its multipart uploads."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installer.backup_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the job config the backup role renders (0600)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-prune", action="store_true",
                        help="leave retention to the next run (a safety backup before a restore: it must not prune the set restored)")
    args = parser.parse_args(argv)
    started = time.time()
    say = None if args.json else (lambda m: print(m, flush=True))
    code, outcome = run_job(args.config, "secrets", lambda cfg: run({**cfg, "prune": False} if args.no_prune else cfg, say),
                            "uploads aborted, no set was left behind")
    if outcome is None:
        return code
    if args.json:
        print(json.dumps(outcome.as_dict()))
    else:
        print(f"{outcome.org}: backup {outcome.set_id} done: {human(outcome.size)} in {outcome.seconds:.1f}s "
              f"({human(outcome.throughput)}/s), {outcome.objects} objects; pruned {len(outcome.pruned)} "
              f"(started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started))})")
        for w in outcome.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
