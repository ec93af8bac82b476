"""Bad inventories are refused with every problem named, before any host is touched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from installer.errors import ConfigError, SfpError
from installer.inventory import Inventory
from installer.validate import validate
from tests.conftest import org_config, write_yaml


def problems_of(inv_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(Inventory(inv_path, inv_path / ".vault-pass"))
    return [str(p) for p in info.value.problems]


def test_example_inventory_is_valid(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory()
    orgs = validate(Inventory(inv, inv / ".vault-pass"))
    assert [o.name for o in orgs] == ["acme", "globex"]
    acme = next(o for o in orgs if o.name == "acme")
    assert acme.machine == "local"
    assert acme.config["services"]["analytics"] is True
    assert acme.project == "sfp-acme"


def test_unknown_key_names_field_and_allowed_keys(make_inventory: Callable[..., Path]) -> None:
    cfg = org_config(8000, 5432, 6543)
    cfg["ports"]["apii"] = 1
    cfg["colour"] = "blue"
    found = problems_of(make_inventory({"acme": cfg}))
    assert any("sfp_org.ports" in p and "'apii'" in p and "allowed keys: analytics, api" in p for p in found), found
    assert any("sfp_org:" in p and "'colour'" in p for p in found), found


def test_org_name_must_be_dns_label(make_inventory: Callable[..., Path]) -> None:
    found = problems_of(make_inventory({"Acme_Corp": org_config(8000, 5432, 6543)}))
    assert any("Acme_Corp" in p and "not a DNS label" in p for p in found), found


def test_port_clash_between_orgs_on_one_machine(make_inventory: Callable[..., Path]) -> None:
    found = problems_of(make_inventory({
        "acme": org_config(8000, 5432, 6543),
        "globex": org_config(8100, 5432, 6643),
    }))
    assert any("globex" in p and "port 5432 clashes with org 'acme'" in p for p in found), found


def test_orgs_on_different_addresses_may_share_a_port(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory({
        "acme": org_config(8000, 5432, 6543, bind_address="127.0.0.2"),
        "globex": org_config(8000, 5532, 6643, bind_address="127.0.0.3"),
    })
    assert len(validate(Inventory(inv, inv / ".vault-pass"))) == 2


def test_wildcard_address_clashes_with_any(make_inventory: Callable[..., Path]) -> None:
    found = problems_of(make_inventory({
        "acme": org_config(8000, 5432, 6543, bind_address="0.0.0.0"),
        "globex": org_config(8000, 5532, 6643, bind_address="127.0.0.3"),
    }))
    assert any("port 8000 clashes" in p for p in found), found


def test_missing_url_bad_email_unknown_release(make_inventory: Callable[..., Path]) -> None:
    cfg = org_config(8000, 5432, 6543, release="v9.9.9", smtp={"host": "smtp", "port": 25, "admin_email": "not-an-email"})
    del cfg["public_url"]
    found = problems_of(make_inventory({"acme": cfg}))
    assert any("sfp_org.public_url: is required" in p for p in found), found
    assert any("smtp.admin_email" in p and "not an email address" in p for p in found), found
    assert any("sfp_org.release" in p and "unknown release 'v9.9.9'" in p and "v0.8.1" in p for p in found), found


def test_every_problem_is_reported_at_once(make_inventory: Callable[..., Path]) -> None:
    bad = org_config(8000, 5432, 6543, bind_address="localhost")
    bad["ports"]["api"] = 70000
    found = problems_of(make_inventory({"acme": bad, "bad_name": org_config(8100, 5532, 6643)}))
    assert len(found) >= 3, found


def test_unknown_machine_setting_is_a_typo(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory(settings={"sfp_base_dir": "/opt/sfp", "sfp_imagecatalog": "test"})
    found = problems_of(inv)
    assert any("sfp_imagecatalog" in p and "unknown setting" in p for p in found), found


def test_unknown_image_catalog(make_inventory: Callable[..., Path]) -> None:
    found = problems_of(make_inventory(settings={"sfp_image_catalog": "nightly"}))
    assert any("sfp_image_catalog" in p and "'nightly'" in p for p in found), found


def test_resources_name_services(make_inventory: Callable[..., Path]) -> None:
    cfg = org_config(8000, 5432, 6543, resources={"database": {"cpus": 1}, "db": {"memory": "lots"}})
    found = problems_of(make_inventory({"acme": cfg}))
    assert any("unknown service 'database'" in p for p in found), found
    assert any("resources.db.memory" in p for p in found), found


def test_missing_inventory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SfpError, match="does not exist"):
        Inventory(tmp_path / "nowhere")


def test_broken_yaml_is_a_clear_error(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory()
    (inv / "host_vars" / "acme" / "main.yml").write_text("sfp_org: [unclosed\n")
    with pytest.raises(SfpError):
        validate(Inventory(inv, inv / ".vault-pass"))


def test_orgs_file_without_sfp_org(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory()
    write_yaml(inv / "host_vars" / "acme" / "main.yml", {"other": 1})
    found = problems_of(inv)
    assert any("host_vars/acme: sfp_org: is missing" in p for p in found), found
