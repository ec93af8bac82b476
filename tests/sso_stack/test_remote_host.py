"""SSO for an org on a REMOTE host: its inventory host is reached with `ansible_connection: ssh`
(a second sshd on a random loopback port, tests/sshd.py) and runs the host's own /usr/bin/python3,
which has none of the toolkit's dependencies. The admin API calls must be made from that host
(sfp_gotrue_admin, not delegated); the planning runs on the controller (sfp_sso_plan, delegated).

Every `sso add` here runs under a process sampler (tests/proc_sampler.py), which sees both sides:
the CLI, ansible-playbook and ssh on the controller; sshd's sessions, the admin API module on the
host and the re-deployed Auth container. No value of the org's vault (read after the command, so
what it stores is included) and not the OIDC client secret given on standard input may be on any
process's command line (readable by every user of the machine) or in the output.

Also: a hand-written sso.yml with a SAML provider. A plain ansible-playbook run without the org's
SAML signing key says exactly what to run; `sfp-server install` generates the key once.

Org ssora of the test catalog, deployed by the scenario itself. One scenario, one test: each step
needs the state the one before left (no key, then the key, then an OIDC provider), so the steps are
functions called in order; no test depends on another.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from installer import runner
from installer import secrets as gen
from installer.actions import deploy
from installer.actions import secrets as secrets_action
from installer.inventory import SECRETS_VAR, Inventory
from installer.sso.sp import check_saml_private_key
from installer.vault import Vault
from tests.conftest import write_yaml
from tests.proc_sampler import INTERVAL, ProcSampler, assert_clean, vault_secrets
from tests.sshd import SshServer, running_sshd
from tests.sso.idp_fixtures import OidcIdP, SamlIdP
from tests.sso_stack.test_sso_stack import cli
from tests.stack.conftest import (
    OPTIONAL_OFF,
    SMALL_API,
    build_inventory,
    docker,
    org_ports,
    org_settings,
    remove_orgs,
    require_test_images,
)

pytestmark = pytest.mark.stack

ORG = "ssora"
REMOTE_PYTHON = "/usr/bin/python3"  # a bare Debian python: no requests, no toolkit
OIDC_SECRET = "ssor-custom-client-secret-4711"


@dataclass
class Remote:
    inv_path: Path
    base_dir: Path
    sshd: SshServer
    ports: dict[str, int]
    events: list[dict[str, Any]] = field(default_factory=list)

    def inventory(self) -> Inventory:
        return Inventory(self.inv_path, self.inv_path / ".vault-pass")

    def secrets(self) -> dict[str, str]:
        return secrets_action.read(self.inventory(), ORG)


def quiet() -> Console:
    return Console(record=True, width=200, file=open("/dev/null", "w"))


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, saml_idp: SamlIdP) -> Iterator[Remote]:
    require_test_images()
    if subprocess.run([REMOTE_PYTHON, "-c", "import requests"], capture_output=True).returncode == 0:
        pytest.fail(f"{REMOTE_PYTHON} imports requests: the test would not show that the host needs no toolkit")
    root = tmp_path_factory.mktemp("sso_remote")
    base_dir = root / "hosts" / "sfp"
    ports = org_ports(ORG)[ORG]
    inv_path = build_inventory(root, {ORG: org_settings(ports, services=OPTIONAL_OFF, resources=SMALL_API)}, base_dir)
    with running_sshd(tmp_path_factory.mktemp("sshd")) as sshd:
        write_yaml(inv_path / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {"machine_remote": {
            "vars": {"sfp_machine": "remote1", **sshd.ansible_vars(REMOTE_PYTHON)},
            "hosts": {ORG: None},
        }}}}}})
        # Written by hand, as an operator would: no `sso add`, so no SAML_PRIVATE_KEY in the vault yet.
        write_yaml(inv_path / "host_vars" / ORG / "sso.yml", {"sfp_org_sso": {
            "allow_insecure_loopback": True,
            "saml": [{"name": "corp", "metadata_url": saml_idp.metadata_url, "domains": ["corp.example"],
                      "expected_entity_id": saml_idp.entity_id}],
        }})
        try:
            yield Remote(inv_path, base_dir, sshd, ports)
        finally:
            remove_orgs((ORG,), base_dir)


def rows(kind: str) -> list[tuple[str, str | None]]:
    """(key, secret is set) per provider of the auth stand-in's table (in the org's database)."""
    done = docker("exec", f"sfp-{ORG}-db", "psql", "-U", "supabase_admin", "-d", "postgres", "-tA", "-F", "|", "-c",
                  f"select key, secret is not null from auth.sfp_standin_sso_providers where kind = '{kind}' order by key",
                  check=False)
    if done.returncode != 0 and "does not exist" in done.stderr:
        return []  # the stand-in makes its table on the first SSO request
    assert done.returncode == 0, done.stderr
    return [(line.split("|")[0], line.split("|")[1]) for line in done.stdout.split()]


def run_site(r: Remote, **kw: Any) -> tuple[runner.RunResult, str]:
    """The site playbook as `install` runs it, keeping every event (as JSON) to look for secrets in."""
    events: list[dict[str, Any]] = []
    result = runner.run_playbook("site.yml", r.inv_path, [ORG], r.inv_path / ".vault-pass", console=quiet(),
                                 on_event=events.append, **kw)
    r.events = events
    return result, json.dumps(events)


def secret_values(r: Remote) -> list[str]:
    values = r.secrets()
    keys = ["SERVICE_ROLE_KEY", "JWT_SECRET", "POSTGRES_PASSWORD", "SAML_PRIVATE_KEY", "SSO_CORP_OIDC_CLIENT_SECRET"]
    out = [values[k] for k in keys if values.get(k)]
    # A multi-line value is checked line by line (JSON escapes the newlines).
    return [line for v in out for line in v.splitlines() if len(line) > 20] + [OIDC_SECRET]


def sampled_cli(r: Remote, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`sfp-server -v ARGS` under the process sampler: it succeeds, the sampler watched both sides, and
    no secret (the vault's values after the run, the OIDC client secret) is on a command line or in the output."""
    with ProcSampler(INTERVAL) as seen:
        done = cli(r.inv_path, "-v", *args, stdin=stdin)
    assert done.returncode == 0, done.stdout + done.stderr
    # ansible-playbook and its ssh client to the org's host (this sshd's port; ControlPersist may reuse
    # one login), and the module runs there (`/bin/sh -c '<python> && sleep 0'`, the module piped to it).
    assert_clean(seen, done, {**vault_secrets(r.secrets()), "the OIDC client secret": OIDC_SECRET},
                 ("ansible-playbook", f"Port={r.sshd.port}", "root@notty", "&& sleep 0"))
    return done


def test_sso_of_an_org_on_a_remote_host(remote: Remote, saml_idp: SamlIdP, oidc_idp: OidcIdP) -> None:
    playbook_without_the_saml_key_says_what_to_run(remote)
    install_generates_the_saml_key_once_and_registers_from_the_host(remote, saml_idp)
    cli_add_custom_oidc_registers_it_from_the_host(remote, oidc_idp)
    cli_add_saml_then_remove_through_the_host(remote, saml_idp)


def playbook_without_the_saml_key_says_what_to_run(remote: Remote) -> None:
    # The org's other secrets exist (as after `secrets ensure` in an older toolkit), the SAML key does not.
    values, _ = gen.complete({})
    Vault(remote.inv_path / ".vault-pass").write(remote.inventory().vault_file(ORG), {SECRETS_VAR: values})
    result, _ = run_site(remote, tags=["stack"])
    assert not result.ok
    text = " ".join(msg for _, _, msg in result.failures) + "\n".join(result.stdout_tail)
    assert f"sfp-server secrets ensure --org {ORG}" in text, text
    assert "SAML_PRIVATE_KEY" in text
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project=sfp-{ORG}").stdout.strip() == ""


def install_generates_the_saml_key_once_and_registers_from_the_host(remote: Remote, saml_idp: SamlIdP) -> None:
    before = remote.sshd.accepted_logins()
    outcome = deploy.install(remote.inventory(), [ORG], quiet())
    if not outcome.result.ok and all("is unhealthy" in m for _, _, m in outcome.result.failures):
        outcome = deploy.install(remote.inventory(), [ORG], quiet())  # a starved CI machine; safe to re-run
    assert outcome.result.ok, outcome.result.failures
    assert outcome.generated == {ORG: ["SAML_PRIVATE_KEY"]}
    key = remote.secrets()["SAML_PRIVATE_KEY"]
    check_saml_private_key(key)
    assert rows("saml") == [(saml_idp.entity_id, "f")]
    assert remote.sshd.accepted_logins() > before, "the org was not reached over SSH"

    # Again: nothing generated, the key kept, nothing changed, and the host path is the one used.
    again, dump = run_site(remote)
    assert again.ok and again.changed == 0, (again.failures, again.changed_tasks)
    # What `install` would generate now (it runs this before its playbook): nothing.
    assert secrets_action.ensure(remote.inventory(), ORG) == []
    assert remote.secrets()["SAML_PRIVATE_KEY"] == key
    # Where each step ran, as ansible-playbook prints it: "[ssora -> localhost]" when delegated.
    where: dict[str, set[str]] = {}
    for e in remote.events:
        data = e.get("event_data", {})
        if e.get("event") == "runner_on_ok" and data.get("task_action") in ("sfp_gotrue_admin", "sfp_sso_plan"):
            label = str(e.get("stdout", "")).split("[", 1)[-1].split("]", 1)[0]
            where.setdefault(data["task_action"], set()).add(label)
    assert where == {"sfp_gotrue_admin": {ORG}, "sfp_sso_plan": {f"{ORG} -> localhost"}}, where
    for value in secret_values(remote):
        assert value not in dump


def cli_add_custom_oidc_registers_it_from_the_host(remote: Remote, oidc_idp: OidcIdP) -> None:
    args = ("sso", "add", "--org", ORG, "--oidc", "--provider", "custom", "--name", "corp-oidc", "--issuer",
            oidc_idp.issuer, "--client-id", "sfp-test-client", "--client-secret-file", "-", "--allow-insecure-loopback")
    done = sampled_cli(remote, *args, stdin=OIDC_SECRET + "\n")
    assert "custom_oidc provider corp-oidc created" in done.stdout
    # The client secret reached Auth (filled in on the host) and is in the vault.
    assert rows("custom") == [("custom:corp-oidc", "t")]
    assert OIDC_SECRET in remote.secrets().values()
    again = cli(remote.inv_path, "-v", *args, stdin=OIDC_SECRET + "\n")
    assert again.returncode == 0 and "changed=0 writes=0" in again.stdout, again.stdout + again.stderr
    assert rows("custom") == [("custom:corp-oidc", "t")]
    dry = deploy.install(remote.inventory(), [ORG], quiet(), check=True)
    assert dry.result.ok and dry.result.changed == 0, (dry.result.failures, dry.result.changed_tasks)


def cli_add_saml_then_remove_through_the_host(remote: Remote, saml_idp: SamlIdP) -> None:
    done = sampled_cli(remote, "sso", "add", "--org", ORG, "--saml", "--metadata-url", saml_idp.metadata_url,
                       "--name", "corp", "--domain", "corp.example", "--domain", "corp2.example", "--allow-insecure-loopback")
    assert "saml provider corp updated" in done.stdout and "domains" in done.stdout
    assert rows("saml") == [(saml_idp.entity_id, "f")]

    for name in ("corp-oidc", "corp"):
        done = cli(remote.inv_path, "-v", "sso", "remove", "--org", ORG, name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"provider {name} removed" in done.stdout
        for value in secret_values(remote):
            assert value not in done.stdout + done.stderr
    assert rows("saml") == [] and rows("custom") == []
    assert json.loads(cli(remote.inv_path, "sso", "list", "--org", ORG, "--json").stdout) == []
    # The org's SAML key stays in the vault (a provider added later signs with the same key).
    assert remote.secrets().get("SAML_PRIVATE_KEY")
    assert "SSO_CORP_OIDC_CLIENT_SECRET" not in remote.secrets()
