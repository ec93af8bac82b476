"""IdP metadata is data, never inventory: where `sso add --metadata-file` keeps it, what the project's
Ansible configuration parses, and the move of copies older versions left in the inventory.

Real ansible-inventory and ansible-playbook runs over inventories holding metadata that validates
but hides an INI inventory in an XML comment (tests/sso/idp_fixtures.with_inventory_payload): parsed
as inventory, its variables' templates run `touch SENTINEL` on the controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from installer import sso_inventory
from installer.sso import xmldsig
from tests.conftest import REPO, org_config
from tests.sso.idp_fixtures import SamlIdP, with_inventory_payload

BIN = Path(sys.executable).parent
PING = [{"hosts": "sfp_orgs", "gather_facts": False, "tasks": [{"ansible.builtin.ping": None}]}]


def ansible(tool: str, inv: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"}
    return subprocess.run([str(BIN / tool), "-i", str(inv), *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=inv.parent)


def ansible_defaults(tmp_path: Path) -> Path:
    """A configuration that sets nothing: Ansible's defaults (every inventory plugin enabled)."""
    cfg = tmp_path / "defaults.cfg"
    cfg.write_text("[defaults]\n")
    return cfg


def assert_inert(inv: Path, config: Path, sentinel: Path, playbook: Path) -> None:
    """Neither the inventory listing nor a playbook run sees the payload's variables or runs it."""
    listed = ansible("ansible-inventory", inv, config, "--list")
    assert listed.returncode == 0, listed.stderr
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    assert set(hostvars) == {"acme"}, hostvars
    assert "sfp_pwned" not in listed.stdout and str(sentinel) not in listed.stdout
    played = ansible("ansible-playbook", inv, config, str(playbook))
    assert played.returncode == 0, played.stdout + played.stderr
    assert not sentinel.exists(), "the metadata was parsed as inventory and its payload ran"


def cli(inv: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), *args], capture_output=True,
                          text=True, timeout=timeout)


def _inventory(make_inventory: Callable[..., Path], tmp_path: Path,
               **machine_vars: Any) -> tuple[Path, Path, Path]:
    inv = make_inventory({"acme": org_config(8000, 5432, 6543)}, machine_vars=machine_vars)
    playbook = tmp_path / "ping.yml"
    playbook.write_text(yaml.safe_dump(PING))
    return inv, tmp_path / "pwned", playbook


def test_project_config_parses_no_stray_file_as_inventory(make_inventory: Callable[..., Path], tmp_path: Path,
                                                         saml_idp: Callable[..., SamlIdP]) -> None:
    inv, sentinel, playbook = _inventory(make_inventory, tmp_path)
    payload = with_inventory_payload(saml_idp().metadata_xml, sentinel, "acme")
    (inv / "stray").write_text(payload)  # no extension: only the enabled plugins keep it out
    script = inv / "stray-script"  # the script plugin would run any executable file
    script.write_text(f"#!/bin/sh\ntouch {sentinel}\necho '{{\"all\": {{\"vars\": {{\"sfp_pwned\": 1}}}}}}'\n")
    script.chmod(0o755)
    assert_inert(inv, REPO / "ansible.cfg", sentinel, playbook)


def test_metadata_copy_is_not_inventory_whatever_the_config(make_inventory: Callable[..., Path], tmp_path: Path,
                                                           saml_idp: Callable[..., SamlIdP]) -> None:
    inv, sentinel, playbook = _inventory(make_inventory, tmp_path)
    payload = with_inventory_payload(saml_idp().metadata_xml, sentinel, "acme").encode()
    copy = sso_inventory.write_metadata_copy(inv, "acme", "corp", payload)
    assert copy == inv / ".sso-metadata" / "acme" / "corp.xml" and copy.read_bytes() == payload
    # Even with every inventory plugin enabled (INI, script, ...): a dot-directory is never read.
    assert_inert(inv, ansible_defaults(tmp_path), sentinel, playbook)
    assert_inert(inv, REPO / "ansible.cfg", sentinel, playbook)


def _legacy_inventory(make_inventory: Callable[..., Path], tmp_path: Path, xml: str,
                      **item: Any) -> tuple[Path, Path, Path]:
    inv, sentinel, playbook = _inventory(make_inventory, tmp_path)
    legacy = inv / "sso" / "acme" / "corp.xml"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(with_inventory_payload(xml, sentinel, "acme"))
    (inv / "host_vars" / "acme" / "sso.yml").write_text(yaml.safe_dump({"sfp_org_sso": {"saml": [
        {"name": "corp", "metadata_file": "sso/acme/corp.xml", "domains": ["corp.example"], **item}]}}))
    return inv, sentinel, playbook


def test_a_copy_left_by_an_older_version_moves_on_the_next_sso_command(
        make_inventory: Callable[..., Path], tmp_path: Path, saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    inv, sentinel, playbook = _legacy_inventory(make_inventory, tmp_path, idp.metadata_xml)
    legacy = inv / "sso" / "acme" / "corp.xml"
    content = legacy.read_bytes()
    # Until then it is still read where sso.yml says, and the project's configuration keeps it inert.
    before = cli(inv, "sso", "check", "--org", "acme", "--json")
    assert before.returncode == 0, before.stdout + before.stderr
    listed = cli(inv, "sso", "list", "--org", "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["metadata"] for r in json.loads(listed.stdout)] == [".sso-metadata/acme/corp.xml"]
    assert not (inv / "sso").exists()
    assert (inv / ".sso-metadata" / "acme" / "corp.xml").read_bytes() == content
    raw = yaml.safe_load((inv / "host_vars" / "acme" / "sso.yml").read_text())["sfp_org_sso"]
    assert raw["saml"][0]["metadata_file"] == ".sso-metadata/acme/corp.xml"
    assert_inert(inv, ansible_defaults(tmp_path), sentinel, playbook)
    checked = cli(inv, "sso", "check", "--org", "acme", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["items"][0]["source"].endswith(".sso-metadata/acme/corp.xml")


def test_show_and_check_say_whether_the_metadata_signature_verifies(
        make_inventory: Callable[..., Path], tmp_path: Path, saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    inv, _, _ = _inventory(make_inventory, tmp_path)
    sso_yml = inv / "host_vars" / "acme" / "sso.yml"

    def configure(**item: Any) -> None:
        sso_yml.write_text(yaml.safe_dump({"sfp_org_sso": {"allow_insecure_loopback": True, "saml": [
            {"name": "corp", "metadata_url": idp.metadata_url, "domains": ["corp.example"], **item}]}}))

    configure(metadata_cert=xmldsig.one_line(idp.cert_path.read_text()))  # as `sso add --metadata-cert` writes it
    assert cli(inv, "validate").returncode == 0
    shown = cli(inv, "sso", "show", "--org", "acme", "corp")
    assert shown.returncode == 0, shown.stderr
    assert "signed, verified with the pinned certificate" in shown.stdout
    checked = cli(inv, "sso", "check", "--org", "acme", "--json")
    assert checked.returncode == 0, checked.stdout
    assert json.loads(checked.stdout)["items"][0]["signature"].startswith("signed, verified with the pinned")

    configure()
    shown = json.loads(cli(inv, "sso", "show", "--org", "acme", "corp", "--json").stdout)
    assert shown["metadata_signature"].startswith("signed, not verified (no certificate pinned")
    assert shown["metadata_cert_sha256"] is None

    other = saml_idp(stem="other", path="/other/metadata")  # an unrelated certificate pinned
    configure(metadata_cert=xmldsig.one_line(other.cert_path.read_text()))
    shown_text = cli(inv, "sso", "show", "--org", "acme", "corp").stdout
    assert "signature does not verify with the pinned certificate" in shown_text
    refused = cli(inv, "sso", "check", "--org", "acme")
    assert refused.returncode == 2 and "does not verify with the pinned certificate" in refused.stdout


def test_sso_add_refuses_bad_metadata_files_before_anything_changes(
        make_inventory: Callable[..., Path], tmp_path: Path, saml_idp: Callable[..., SamlIdP]) -> None:
    idp = saml_idp()
    # A machine nobody can reach: if a refusal ever let `sso add` through, its playbook fails at once
    # instead of deploying a stack outside the docker lock.
    inv, _, _ = _inventory(make_inventory, tmp_path, ansible_connection="ssh", ansible_host="127.0.0.1",
                           ansible_port=1)
    big = tmp_path / "big.xml"
    big.write_bytes(idp.metadata_xml.encode() + b"<!--" + b"x" * (5 * 1024 * 1024) + b"-->")
    other = saml_idp(stem="other", path="/other/metadata")
    good = tmp_path / "idp.xml"
    good.write_text(idp.metadata_xml)
    unsigned_other_cert = ("--metadata-file", str(good), "--metadata-cert", str(other.cert_path))
    for extra, expected in (
        (("--metadata-file", str(big)), "is larger than 5 MiB"),
        (unsigned_other_cert, "does not verify with the pinned certificate"),
        (("--metadata-file", str(good), "--metadata-cert", str(good)), "not a readable PEM X.509 certificate"),
    ):
        # A refusal takes seconds. (Copied into the inventory, the 5 MiB file kept the CLI's own
        # inventory load busy in the INI parser for minutes.)
        done = cli(inv, "sso", "add", "--org", "acme", "--saml", "--name", "corp", "--domain", "corp.example", *extra,
                   timeout=90)
        assert done.returncode != 0 and expected in " ".join(done.stderr.split()), done.stderr
    assert not (inv / "host_vars" / "acme" / "sso.yml").exists()
    assert not (inv / ".sso-metadata").exists() and not (inv / "sso").exists()


def test_adding_a_pinned_provider_again_keeps_its_pin(make_inventory: Callable[..., Path], tmp_path: Path,
                                                     saml_idp: Callable[..., SamlIdP]) -> None:
    idp, other = saml_idp(), saml_idp(stem="other", path="/other/metadata")
    inv, _, _ = _inventory(make_inventory, tmp_path, ansible_connection="ssh", ansible_host="127.0.0.1",
                           ansible_port=1)
    sso_yml = inv / "host_vars" / "acme" / "sso.yml"
    sso_yml.write_text(yaml.safe_dump({"sfp_org_sso": {"allow_insecure_loopback": True, "saml": [
        {"name": "corp", "metadata_url": other.metadata_url, "domains": ["corp.example"],
         "metadata_cert": xmldsig.one_line(other.cert_path.read_text())}]}}))
    before = sso_yml.read_text()
    # Pointed at another IdP's metadata without --metadata-cert: the pin still applies, so it is refused.
    done = cli(inv, "sso", "add", "--org", "acme", "--saml", "--name", "corp", "--domain", "corp.example",
               "--metadata-url", idp.metadata_url, "--allow-insecure-loopback", timeout=90)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "does not verify with the pinned certificate" in " ".join(done.stderr.split())
    assert sso_yml.read_text() == before


def test_the_cli_loads_the_inventory_with_its_own_config_wherever_it_runs(
        make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    # An ansible.cfg in the operator's working directory enables every plugin; the CLI's in-process
    # inventory load must still use the toolkit's own configuration and never run the script.
    inv, sentinel, _ = _inventory(make_inventory, tmp_path)
    script = inv / "stray-script"
    script.write_text(f"#!/bin/sh\ntouch {sentinel}\necho '{{\"all\": {{\"vars\": {{\"sfp_pwned\": 1}}}}}}'\n")
    script.chmod(0o755)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    (workdir / "ansible.cfg").write_text("[inventory]\nenable_plugins = script, ini, yaml, host_list, auto\n")
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    done = subprocess.run([sys.executable, "-m", "installer.cli", "-i", str(inv), "validate"], capture_output=True,
                          text=True, timeout=180, cwd=workdir, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not sentinel.exists(), "the CLI loaded the inventory with the working directory's ansible.cfg"
