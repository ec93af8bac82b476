"""An org resolved once (installer.context): unknown names, transport, secrets read on use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from installer.context import OrgContext, Transport, resolve
from installer.errors import ConfigError, SfpError
from installer.inventory import Inventory, UnknownOrgError
from tests.conftest import org_config, write_yaml


def inventory(path: Path) -> Inventory:
    return Inventory(path, path / ".vault-pass")


def test_an_unknown_org_is_an_invalid_argument(make_inventory: Callable[..., Path]) -> None:
    inv = inventory(make_inventory())
    with pytest.raises(UnknownOrgError) as exc:
        resolve(inv, "nosuch")
    assert exc.value.exit_code == 2 and "acme, globex" in exc.value.message


def test_check_validates_the_inventory_first(make_inventory: Callable[..., Path]) -> None:
    bad = org_config(18000, 15432, 16543)
    bad["bind_address"] = "not an address\n"
    inv = inventory(make_inventory({"acme": bad}))
    ctx = resolve(inv, "acme")  # looking the org up needs no valid settings (uninstall, logs)
    assert ctx.name == "acme" and not ctx.checked
    with pytest.raises(ConfigError) as exc:
        resolve(inv, "acme", check=True)
    assert "host_vars/acme" in exc.value.message


def test_transport_from_the_connection_variables(make_inventory: Callable[..., Path]) -> None:
    path = make_inventory({"acme": org_config(18000, 15432, 16543), "globex": org_config(18010, 15442, 16553)})
    write_yaml(path / "hosts.yml", {"all": {"children": {"sfp_orgs": {"children": {
        "here": {"vars": {"ansible_connection": "local"}, "hosts": {"acme": None}},
        "there": {"vars": {"ansible_host": "10.0.0.9", "ansible_user": "deploy", "ansible_port": 2222,
                           "ansible_ssh_private_key_file": "/keys/id", "ansible_become": "yes"},
                  "hosts": {"globex": None}}}}}}})
    inv = inventory(path)
    assert resolve(inv, "acme").transport == Transport(connection="local", host="acme")
    assert resolve(inv, "acme").transport.local
    there = resolve(inv, "globex").transport
    assert there == Transport(connection="ssh", host="10.0.0.9", user="deploy", port=2222, key_file="/keys/id", become=True)
    assert not there.local


def test_secrets_are_read_on_first_use_and_written_back(make_inventory: Callable[..., Path]) -> None:
    path = make_inventory()
    (path / ".vault-pass").unlink()
    ctx = resolve(inventory(path), "acme")  # no vault password needed to resolve (e.g. `backup list`)
    assert ctx.secrets == {}  # no vault file yet: nothing to decrypt
    with pytest.raises(SfpError) as exc:
        ctx.write_secrets({"SMTP_PASS": "x"})
    assert "vault password file" in exc.value.message


def test_reload_reads_the_files_again_and_keeps_the_follow_up_format(make_inventory: Callable[..., Path]) -> None:
    inv = inventory(make_inventory())
    ctx = resolve(inv, "acme", follow_up=lambda *a: "X " + " ".join(a))
    ctx.write_secrets({"SMTP_PASS": "one"})
    assert ctx.secrets == {"SMTP_PASS": "one"}
    fresh = ctx.reload()
    assert isinstance(fresh, OrgContext) and fresh is not ctx and fresh.inventory is not inv
    assert fresh.secrets == {"SMTP_PASS": "one"}
    assert fresh.command("status", "--org", "acme") == "X status --org acme"
    assert resolve(inv, "acme").command("install") == "sfp-server install"
