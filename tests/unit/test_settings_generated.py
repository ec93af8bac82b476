"""The files generated from the settings schemas are what the generator makes of the schemas today."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from installer import backup_inventory as binv
from installer import settings, settings_docs

REPO = Path(__file__).resolve().parents[2]
COMMAND = "python -m installer.settings_docs   (or scripts/gen-settings)"


def test_generated_files_match_the_schemas() -> None:
    found = settings_docs.stale()
    assert not found, "generated from installer/schema, but different (or without markers):\n  " + "\n  ".join(found) + \
        f"\nregenerate with: {COMMAND}"


def test_a_changed_default_makes_the_check_fail_and_regenerating_fixes_it(tmp_path: Path) -> None:
    """The check compares content, not timestamps: a schema edit not carried into the files is caught."""
    root = tmp_path / "repo"
    for part in ("roles", "playbooks", "inventory.example"):
        shutil.copytree(REPO / part, root / part)
    defaults = root / "roles" / "supabase_stack" / "defaults" / "main.yml"
    defaults.write_text(defaults.read_text().replace("jwt_expiry: 3600", "jwt_expiry: 7200"))
    assert any("roles/supabase_stack/defaults/main.yml" in line for line in settings_docs.stale(root))
    changed, errors = settings_docs.write(root)
    assert errors == [] and defaults in changed and settings_docs.stale(root) == []


def test_role_defaults_and_specs_carry_the_schema_defaults() -> None:
    """What a standalone role run gets is what an install gets."""
    defaults = yaml.safe_load((REPO / "roles" / "supabase_stack" / "defaults" / "main.yml").read_text())
    assert defaults["supabase_stack__auth"] == settings.default_of("org", "auth")
    assert defaults["supabase_stack__resources_default"] == settings.default_of("org", "resources")
    assert defaults["supabase_stack__base_dir"] == settings.default_of("machine", "sfp_base_dir")
    assert defaults["supabase_stack__pooler"] == {"default_pool_size": 20, "max_client_conn": 100}
    specs = yaml.safe_load((REPO / "roles" / "supabase_stack" / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert options["supabase_stack__auth"]["options"]["jwt_expiry"]["default"] == settings.default_of("org", "auth", "jwt_expiry")
    assert options["supabase_stack__release"]["required"] is True
    preflight = yaml.safe_load((REPO / "roles" / "preflight" / "defaults" / "main.yml").read_text())
    assert preflight["preflight__resources_default"] == defaults["supabase_stack__resources_default"]
    assert preflight["preflight__min_free_disk_gb"] == settings.default_of("machine", "sfp_min_free_disk_gb")


def test_every_org_input_reaches_the_playbooks() -> None:
    """playbooks/vars/org.yml hands the roles every input the model computes, and only those."""
    org_vars = yaml.safe_load((REPO / "playbooks" / "vars" / "org.yml").read_text())
    mapped = {k for k, v in org_vars.items() if isinstance(v, str) and "sfp__inputs." in v}
    assert mapped == set(settings.input_names())


def test_paths_derived_from_the_org_follow_one_template() -> None:
    """The backup paths left out are derived from the org by the schema's template, in the CLI, in the
    model and in a standalone role run alike."""
    defaults = yaml.safe_load((REPO / "roles" / "backup" / "defaults" / "main.yml").read_text())
    jinja = {"org": "{{ backup__org }}", "org_dir": "{{ backup__org_dir }}"}
    for field, var in (("metrics_dir", "backup__metrics_dir"), ("env_file", "backup__env_file")):
        assert defaults[var] == settings.org_path_default("backup", f"paths.{field}", **jinja)
    assert binv.metrics_dir("/srv/orgs/acme/", None) == "/srv/orgs/acme/backup/metrics"
    assert binv.env_file("acme", None) == "/etc/sfp/backup-acme.env"
    assert binv.env_file("acme", {"paths": {"env_file": "/etc/x.env"}}) == "/etc/x.env"
