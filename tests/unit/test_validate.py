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


# -- URLs, addresses and paths: checked formats, one line each (issue #10 part E) -----------------

@pytest.mark.parametrize("key, value, field, why", [
    ("site_url", "https://app.example/a b", "sfp_org.site_url", "is not a valid uri"),
    ("site_url", "https://app.example/${SERVICE_ROLE_KEY}", "sfp_org.site_url", "is not a valid uri"),
    # `$` in the schema's patterns and in the URI parser matches before a final newline.
    ("site_url", "https://app.example/\n", "sfp_org.site_url", "line break"),
    ("public_url", "https://api.example\n", "sfp_org.public_url", "line break"),
    ("public_url", "https://api example", "sfp_org.public_url", "is not accepted here"),
    ("site_url", "javascript:alert(1)", "sfp_org.site_url", "is not accepted here"),
    ("additional_redirect_urls", ["https://ok.example/cb", "javascript://x%0aalert(1)"],
     "sfp_org.additional_redirect_urls.1", "is not accepted here"),
    ("additional_redirect_urls", ["data://text/html,x"], "sfp_org.additional_redirect_urls.0", "is not accepted here"),
    # GOTRUE_URI_ALLOW_LIST is comma-separated: a comma would smuggle in a second URL.
    ("additional_redirect_urls", ["https://ok.example/cb,https://evil.example"],
     "sfp_org.additional_redirect_urls.0", "is not accepted here"),
    ("smtp", {"host": "smtp.example.com", "port": 25, "admin_email": "ops@example.com\nBcc: all@example.com"},
     "sfp_org.smtp.admin_email", "line break"),
    ("smtp", {"host": "smtp.example.com; rm -rf /", "port": 25, "admin_email": "ops@example.com"},
     "sfp_org.smtp.host", "is not accepted here"),
    ("studio", {"default_project": "Main\r\nEVIL: 1"}, "sfp_org.studio.default_project", "line break"),
    ("logs", {"export": {"bucket": "logs-bucket", "endpoint_url": "https://s3.example/ x"}},
     "sfp_org.logs.export.endpoint_url", "is not"),
])
def test_urls_and_addresses_are_refused_naming_the_field(make_inventory: Callable[..., Path], key: str, value: object,
                                                          field: str, why: str) -> None:
    found = problems_of(make_inventory({"acme": org_config(8000, 5432, 6543, **{key: value})}))
    assert any(f"host_vars/acme: {field}:" in p and why in p for p in found), found


def test_a_control_character_is_reported_without_the_value(make_inventory: Callable[..., Path]) -> None:
    # Blocks such as backup.store.credentials may hold a secret: the problem names the field only.
    found = problems_of(make_inventory({"acme": org_config(8000, 5432, 6543, studio={"default_organization": "s3cr3t\nx"})}))
    assert any("sfp_org.studio.default_organization" in p and "'\\n' at position 6" in p for p in found), found
    assert not any("s3cr3t" in p for p in found), found


def test_uri_format_is_enforced_by_jsonschema() -> None:
    from installer.settings import format_checker

    checker = format_checker()
    assert "uri" in checker.checkers
    assert checker.conforms("https://app.example/callback?next=/home", "uri")
    assert not checker.conforms("https://app.example/a b", "uri")


def test_usual_urls_stay_valid(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory({"acme": org_config(8000, 5432, 6543, site_url="https://app.example/callback?x=1",
                                             additional_redirect_urls=["https://*.example.com/**", "myapp://callback",
                                                                       "http://localhost:3000/**"],
                                             smtp={"host": "10.0.0.25", "port": 25, "admin_email": "ops@example.com"})})
    assert [o.name for o in validate(Inventory(inv, inv / ".vault-pass"))] == ["acme"]


def test_base_dir_is_a_plain_path(make_inventory: Callable[..., Path]) -> None:
    # It is written into cron lines, unit files and shell commands on the host.
    found = problems_of(make_inventory(settings={"sfp_base_dir": "/opt/my sfp"}))
    assert any("sfp_base_dir" in p and "is not accepted here" in p for p in found), found
