"""No secret of the org on any process's command line during `sso add` (SAML, then OIDC with a client secret).

A command line is readable by every user of the machine (`ps`). Org ssopt's host is reached over
SSH (a second sshd on loopback, tests/sshd.py; this machine's Docker engine), so the sampler of
tests/proc_sampler.py sees both sides of each `sso add`: the CLI, ansible-playbook and ssh on the
controller; sshd's sessions, the admin API module on the host, and the re-deployed Auth container.
The secrets looked for are every value of the org's vault (read with the toolkit's own reader after
the command, so the SAML signing key it generates and the client secret it stores are included)
and the OIDC client secret as given on standard input.

One org deployment for the module. Each `sso add` test adds a provider of its own (SAML corp, OIDC
corp-oidc) and needs nothing another test made: they pass in any order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from installer.actions import deploy
from installer.actions import secrets as secrets_action
from installer.inventory import Inventory
from tests.conftest import write_yaml
from tests.proc_sampler import ProcSampler, positive_control, vault_secrets
from tests.sshd import SshServer, running_sshd
from tests.sso.idp_fixtures import OidcIdP, SamlIdP
from tests.stack.conftest import (
    OPTIONAL_OFF,
    SMALL_API,
    build_inventory,
    org_ports,
    org_settings,
    remove_orgs,
    require_test_images,
)

pytestmark = pytest.mark.stack

ORG = "ssopt"
OIDC_SECRET = "ssopt-oidc-client-secret-5f3a9c1e77d2"
# Wide enough to catch a process that lives a few tens of milliseconds (ssh, a shell, a module run);
# the positive control below proves it with processes of 50 ms.
INTERVAL = 0.005


@dataclass
class Deployment:
    inv_path: Path
    sshd: SshServer

    def secrets(self) -> dict[str, str]:
        return secrets_action.read(Inventory(self.inv_path, self.inv_path / ".vault-pass"), ORG)


def quiet() -> Console:
    return Console(record=True, width=200, file=open(os.devnull, "w"))


def cli(inv: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args], capture_output=True,
                          text=True, timeout=900, input=stdin, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_test_images()
    root = tmp_path_factory.mktemp("sso_proc")
    base_dir = root / "hosts" / "sfp"
    ports = org_ports(ORG)[ORG]
    inv_path = build_inventory(root, {ORG: org_settings(ports, services=OPTIONAL_OFF, resources=SMALL_API)}, base_dir)
    with running_sshd(tmp_path_factory.mktemp("sshd")) as sshd:
        write_yaml(inv_path / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {"machine_remote": {
            "vars": {"sfp_machine": "remote1", **sshd.ansible_vars(sys.executable)},
            "hosts": {ORG: None},
        }}}}}})
        try:
            inv = Inventory(inv_path, inv_path / ".vault-pass")
            outcome = deploy.install(inv, [ORG], quiet())
            if not outcome.result.ok and all("is unhealthy" in m for _, _, m in outcome.result.failures):
                outcome = deploy.install(inv, [ORG], quiet())  # a starved CI machine; install is safe to re-run
            assert outcome.result.ok, outcome.result.failures
            yield Deployment(inv_path, sshd)
        finally:
            remove_orgs((ORG,), base_dir)


def add(d: Deployment, *args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], ProcSampler]:
    with ProcSampler(INTERVAL) as seen:
        done = cli(d.inv_path, "-v", "sso", "add", "--org", ORG, *args, stdin=stdin)
    if done.returncode == 3 and "is unhealthy" in done.stderr:
        # A stand-in's health check can miss its timeout on a starved machine; the command is safe to re-run.
        with ProcSampler(INTERVAL) as seen:
            done = cli(d.inv_path, "-v", "sso", "add", "--org", ORG, *args, stdin=stdin)
    assert done.returncode == 0, done.stdout + done.stderr
    # The sampler watched the run on both sides: ansible-playbook and its ssh client to the org's
    # host (this sshd's port; Ansible's ControlPersist may reuse one login), and the module runs
    # there (`/bin/sh -c '<python> && sleep 0'`, the module piped to it).
    for step in ("ansible-playbook", f"Port={d.sshd.port}", "root@notty", "&& sleep 0"):
        assert seen.saw(step), (step, seen.command_lines())
    return done, seen


def test_the_sampler_catches_a_secret_on_a_command_line() -> None:
    caught, runs = positive_control(runs=5, lifetime=0.05, interval=INTERVAL)
    assert caught == runs


def test_sso_add_saml_puts_no_secret_on_a_command_line(remote: Deployment, saml_idp: SamlIdP) -> None:
    done, seen = add(remote, "--saml", "--metadata-url", saml_idp.metadata_url, "--name", "corp",
                     "--domain", "corp.example", "--allow-insecure-loopback")
    assert "saml provider corp created" in done.stdout, done.stdout
    values = vault_secrets(remote.secrets())
    assert len(values["SAML_PRIVATE_KEY"]) > 100  # the signing key this add generated is looked for too
    leaks = seen.leaks(values)
    assert not leaks, json.dumps(leaks, indent=1)
    for name, value in values.items():
        assert value not in done.stdout + done.stderr, name


def test_sso_add_oidc_with_a_client_secret_puts_no_secret_on_a_command_line(remote: Deployment, oidc_idp: OidcIdP) -> None:
    done, seen = add(remote, "--oidc", "--provider", "custom", "--name", "corp-oidc", "--issuer", oidc_idp.issuer,
                     "--client-id", "sfp-test-client", "--client-secret-file", "-", "--allow-insecure-loopback",
                     stdin=OIDC_SECRET + "\n")
    assert "custom_oidc provider corp-oidc created" in done.stdout, done.stdout
    values = vault_secrets(remote.secrets())
    assert OIDC_SECRET in values.values()  # stored in the vault, sent to Auth from the host
    leaks = seen.leaks({**values, "client secret": OIDC_SECRET})
    assert not leaks, json.dumps(leaks, indent=1)
    for name, value in values.items():
        assert value not in done.stdout + done.stderr, name
