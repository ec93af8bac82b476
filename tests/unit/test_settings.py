"""installer.settings: the schemas are the one source of defaults, and the model is what the roles get."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer import settings
from installer.errors import ConfigError
from installer.inventory import Inventory
from installer.validate import validate
from tests.conftest import org_config

REPO = Path(__file__).resolve().parents[2]


def hostvars(**org: Any) -> dict[str, Any]:
    return {"sfp_org": org_config(8000, 5432, 6543, **org)}


def test_defaults_fill_absent_blocks_and_partly_written_ones() -> None:
    cfg = settings.org_config(org_config(8000, 5432, 6543, auth={"jwt_expiry": 600}, resources={"db": {"cpus": 4}}))
    assert cfg["auth"] == {"disable_signup": False, "enable_email_signup": True, "enable_email_autoconfirm": False,
                           "enable_anonymous_users": False, "enable_phone_signup": False,
                           "enable_phone_autoconfirm": False, "jwt_expiry": 600}
    # A service given in part keeps the default of what it leaves out; the others keep theirs.
    assert cfg["resources"]["db"] == {"cpus": 4, "memory": "2g"}
    assert cfg["resources"]["studio"] == {"cpus": 1, "memory": "1g"}
    assert cfg["site_url"] == "http://127.0.0.1:8000"
    assert cfg["pooler"] == {"default_pool_size": 20, "max_client_conn": 100}
    assert cfg["rest"] == {"schemas": ["public", "storage", "graphql_public"]}
    assert cfg["functions"] == {"verify_jwt": False}
    # Blocks that need keys of their own exist only when written.
    assert "smtp" not in cfg and "backup" not in cfg


def test_defaults_reach_through_ref_into_the_backup_schema() -> None:
    block = {"store": {"bucket": "b", "credentials": {"source": "vault"}}}
    cfg = settings.with_defaults("org", org_config(8000, 5432, 6543, backup=block))
    assert cfg["backup"]["schedule"] == settings.default_of("backup", "schedule")
    assert cfg["backup"]["store"]["bucket"] == "b"
    assert cfg["backup"]["store"]["region"] == settings.default_of("backup", "store", "region")


@pytest.mark.parametrize("memory, max_connections, expected", [
    # 25% / 75% of the limit, a quarter of it over the connections.
    ("2g", None, {"shared_buffers": "512MB", "effective_cache_size": "1536MB", "work_mem": "5242kB", "max_connections": 100}),
    ("4g", 200, {"shared_buffers": "1024MB", "effective_cache_size": "3072MB", "work_mem": "5242kB",
                 "max_connections": 200}),
    ("512m", None, {"shared_buffers": "128MB", "effective_cache_size": "384MB", "work_mem": "1310kB", "max_connections": 100}),
    ("1.5g", None, {"shared_buffers": "384MB", "effective_cache_size": "1152MB", "work_mem": "3932kB", "max_connections": 100}),
    # A tiny limit never goes below PostgreSQL's own minimum work_mem.
    ("64m", 10000, {"shared_buffers": "16MB", "effective_cache_size": "48MB", "work_mem": "64kB", "max_connections": 10000}),
])
def test_postgres_defaults_are_sized_from_the_db_memory_limit(memory: str, max_connections: int | None,
                                                              expected: dict[str, Any]) -> None:
    given = {} if max_connections is None else {"max_connections": max_connections}
    cfg = settings.org_config(org_config(8000, 5432, 6543, resources={"db": {"memory": memory}}, postgres=given))
    assert cfg["postgres"] == expected


def test_postgres_settings_written_win_and_the_default_limit_sizes_the_rest() -> None:
    cfg = settings.org_config(org_config(8000, 5432, 6543, postgres={"shared_buffers": "1GB", "work_mem": "16MB"}))
    # No resources.db: the schema's default db limit (2g) sizes what is not written.
    assert settings.default_of("org", "resources", "db", "memory") == "2g"
    assert cfg["postgres"] == {"shared_buffers": "1GB", "work_mem": "16MB", "max_connections": 100,
                               "effective_cache_size": "1536MB"}


def test_role_inputs_carry_the_model() -> None:
    inputs = settings.role_inputs("acme", {
        **hostvars(resources={"db": {"memory": "8g"}}, pooler={"default_pool_size": 40}, rest={"schemas": ["public", "api"]},
                   functions={"verify_jwt": True}, bind_address="0.0.0.0"),
        "sfp_base_dir": "/srv/sfp", "sfp_docker_socket": "/run/user/1000/docker.sock",
        "sfp_org_secrets": {"POSTGRES_PASSWORD": "pw", "BACKUP_RECOVERY_IDENTITY": "AGE-SECRET-KEY-1X",
                            "BACKUP_SIGNING_KEY": "k", "BACKUP_RECOVERY_RECIPIENT": "age1x"},
    })
    assert set(inputs) == set(settings.input_names())
    assert inputs["supabase_stack__postgres"]["shared_buffers"] == "2048MB"
    assert inputs["supabase_stack__pooler"] == {"default_pool_size": 40, "max_client_conn": 100}
    assert inputs["supabase_stack__rest"] == {"schemas": ["public", "api"]}
    assert inputs["supabase_stack__functions"] == {"verify_jwt": True}
    assert inputs["supabase_stack__docker_socket"] == "/run/user/1000/docker.sock"
    assert inputs["supabase_stack__org_dir"] == inputs["backup__org_dir"] == "/srv/sfp/orgs/acme"
    assert inputs["supabase_stack__base_dir"] == inputs["preflight__base_dir"] == "/srv/sfp"
    assert inputs["preflight__ports"] == [5432, 6543, 8000]
    assert inputs["supabase_sso__api_url"] == "http://127.0.0.1:8000"
    # The backup job's keys never reach the stack's .env (the recovery key opens every set); the job's
    # own config gets what it needs.
    assert inputs["supabase_stack__secrets"] == {"POSTGRES_PASSWORD": "pw"}
    assert inputs["backup__secrets"]["BACKUP_SIGNING_KEY"] == "k"
    assert inputs["backup__settings"] == {} and inputs["backup__schedule"] == settings.default_of("backup", "schedule")
    assert inputs["supabase_stack__resources_default"]["db"] == {"cpus": 2, "memory": "2g"}


def test_a_bad_setting_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        settings.role_inputs("acme", hostvars(postgres={"shared_buffers": "lots"}, rest={"schemas": []}))
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith("host_vars/acme: sfp_org.postgres.shared_buffers: 'lots' is not accepted here") for p in found), found
    assert any(p.startswith("host_vars/acme: sfp_org.rest.schemas:") for p in found), found
    # A removal still gets its inputs: an org must stay removable whatever its settings say.
    assert settings.role_inputs("acme", hostvars(postgres={"shared_buffers": "lots"}), strict=False)["supabase_stack__org"] == "acme"


@pytest.mark.parametrize("org, machine, field", [
    # A second `-c` would smuggle another server option in; a space or newline would too.
    ({"postgres": {"work_mem": "4MB -c archive_command=sh"}}, {}, "sfp_org.postgres.work_mem"),
    ({"postgres": {"effective_cache_size": "1GB\n"}}, {}, "sfp_org.postgres.effective_cache_size"),
    # A schema list is one comma-separated variable: a comma or quote inside a name would add schemas.
    ({"rest": {"schemas": ["public,auth"]}}, {}, "sfp_org.rest.schemas.0"),
    ({"rest": {"schemas": ['pub"lic']}}, {}, "sfp_org.rest.schemas.0"),
    ({"pooler": {"default_pool_size": "20; drop"}}, {}, "sfp_org.pooler.default_pool_size"),
    ({"functions": {"verify_jwt": "false"}}, {}, "sfp_org.functions.verify_jwt"),
    # A bind mount source with a colon would mount another host path, or mount it read-write.
    ({}, {"sfp_docker_socket": "/etc:/var/run/docker.sock:rw"}, "sfp_docker_socket"),
    ({}, {"sfp_docker_socket": "run/docker.sock"}, "sfp_docker_socket"),
])
def test_hostile_values_of_the_new_settings_are_refused(make_inventory: Callable[..., Path], org: dict[str, Any],
                                                         machine: dict[str, Any], field: str) -> None:
    inv = make_inventory({"acme": org_config(8000, 5432, 6543, **org)}, settings=machine or None)
    with pytest.raises(ConfigError) as info:
        validate(Inventory(inv, inv / ".vault-pass"))
    assert any(f" {field}:" in str(p) or str(p).split(": ")[1] == field for p in info.value.problems), info.value.problems


def test_every_default_is_written_once() -> None:
    """The literals that were repeated across Python, Jinja and the roles are now only in the schema."""
    for path in ["installer/inventory.py", "installer/validate.py", "playbooks/vars/org.yml"]:
        text = (REPO / path).read_text()
        assert "3600" not in text and "/opt/sfp" not in text and "'20m'" not in text, path
    # The role defaults hold them only inside the generated block.
    for role in ("supabase_stack", "preflight"):
        text = (REPO / "roles" / role / "defaults" / "main.yml").read_text()
        outside = text.split("# BEGIN settings")[0] + text.split("# END settings")[1]
        assert "jwt_expiry" not in outside and "/opt/sfp" not in outside and "memory: 2g" not in outside, role


def test_schema_text_names_the_real_smtp_secret() -> None:
    text = yaml.safe_dump(settings.schema("org"))
    assert "smtp_password" not in text and "secrets set --org ORG SMTP_PASS" in text
    from installer.secrets import OPERATOR_SET

    assert "SMTP_PASS" in OPERATOR_SET and "OPENAI_API_KEY" in OPERATOR_SET


def test_every_schema_field_is_described_and_typed() -> None:
    missing: list[str] = []

    def walk(node: Any, resolver: Any, path: str) -> None:
        node, resolver = settings.resolve(node, resolver)
        for key, sub in (node.get("properties") or {}).items():
            sub_node, sub_resolver = settings.resolve(sub, resolver)
            if str(sub.get("$ref", "#")).startswith("#"):  # another area's file has its own test
                if "type" not in sub_node or not sub_node.get("description"):
                    missing.append(f"{path}.{key}")
                walk(sub_node, sub_resolver, f"{path}.{key}")

    for area in ("org", "machine"):
        walk(settings.schema(area), settings.root_resolver(area), area)
    assert missing == [], missing


def test_a_pool_as_large_as_max_connections_is_refused(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory({"acme": org_config(8000, 5432, 6543, pooler={"default_pool_size": 100})})
    with pytest.raises(ConfigError) as info:
        validate(Inventory(inv, inv / ".vault-pass"))
    assert [str(p) for p in info.value.problems] == [
        "host_vars/acme: sfp_org.pooler.default_pool_size: 100 pooled server connections leave none of "
        "postgres.max_connections (100) to the other services → lower pooler.default_pool_size or raise "
        "postgres.max_connections"]
    fixed = make_inventory({"acme": org_config(8000, 5432, 6543, pooler={"default_pool_size": 100},
                                               postgres={"max_connections": 300})}, name="fixed")
    assert [o.name for o in validate(Inventory(fixed, fixed / ".vault-pass"))] == ["acme"]
