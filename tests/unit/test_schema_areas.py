"""The backup, SSO and logs settings schemas (installer/schema/{backup,sso,logs}.yml): the one place
their fields, rules and defaults are written, and the one validation path (installer.settings.check,
then what a schema cannot say) the libraries take."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from installer import backup_inventory as binv
from installer import settings
from installer.backup import generate_recovery_key, parse_settings
from installer.errors import ConfigError
from installer.logs.config import export_settings
from installer.sso import config as sso_config
from installer.sso_inventory import check as sso_check

REPO = Path(__file__).resolve().parents[2]
RECIPIENT = generate_recovery_key()[1]

BACKUP: dict[str, Any] = {
    "store": {"endpoint_url": "https://s3.example.net", "region": "eu-central-1", "bucket": "acme-backups",
              "prefix": "prod/sfp", "path_style": True, "checksum_mode": "when_required",
              "credentials": {"source": "vault", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-value"}},
    "recipient": RECIPIENT,
    "schedule": "0 */6 * * 1-5",
    "retention": {"keep_daily": 3, "keep_weekly": 2, "keep_monthly": 6, "keep_yearly": 1},
    "webhook_url": "https://hooks.example.net/backup",
    "jobs": 4,
    "paths": {"metrics_dir": "/var/lib/node_exporter/textfile_collector", "env_file": "/etc/sfp/acme-s3.env"},
}
SSO: dict[str, Any] = {
    "saml": [
        {"name": "acme-okta", "metadata_url": "https://acme.okta.com/app/x/sso/saml/metadata", "domains": ["Acme.com"],
         "expected_entity_id": "http://www.okta.com/x",
         "attribute_mapping": {"keys": {"email": {"name": "mail"}, "groups": {"names": ["g", "groups"], "array": True,
                                                                             "default": []}}},
         "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"},
        {"name": "beta", "metadata_file": ".sso-metadata/acme/beta.xml", "domains": ["beta.example"]},
    ],
    "oidc": [
        {"name": "kc", "provider": "keycloak", "url": "https://kc.acme.com/realms/acme", "client_id": "supabase",
         "skip_nonce_check": True, "email_optional": True},
        {"name": "corp", "provider": "custom", "issuer": "https://login.corp.example/", "client_id": "c1",
         "client_secret_vault_key": "SSO_CORP_SECRET", "scopes": ["openid", "email"]},
    ],
    "saml_allow_encrypted_assertions": True,
    "saml_relay_state_validity_period": "2m30s",
    "allow_hosts": ["IDP.Internal.Example.", "[fe80::1]", "169.254.0.10"],
    "allow_insecure_loopback": False,
}
LOGS: dict[str, Any] = {"export": {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1", "path_style": True,
                                   "bucket": "acme-logs", "prefix": "logs/acme",
                                   "retention": {"keep_last": 30, "keep_days": 7.5}}}


def changed(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `data` with the field at `path` set to `value` (removed for ...)."""
    out = copy.deepcopy(data)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


# -- a full example of each area is valid, and its model is built from it ---------------------------
def test_full_examples_validate_and_build_their_models() -> None:
    for name, value in (("backup", BACKUP), ("sso", SSO), ("logs", LOGS)):
        assert settings.check("host_vars/acme", "x", value, name) == [], name
    backup = parse_settings(BACKUP)
    assert backup.store.checksum_mode == "when_required" and backup.retention.keep_yearly == 1 and backup.jobs == 4
    sso = sso_config.parse_sso_settings(SSO)
    assert sso.saml[0].domains == ("acme.com",) and sso.saml[1].metadata_file == ".sso-metadata/acme/beta.xml"
    assert sso.oidc[1].client_secret_vault_key == "SSO_CORP_SECRET" and sso.oidc[0].skip_nonce_check
    assert sso.allow_hosts == ("169.254.0.10", "fe80::1", "idp.internal.example")
    assert sso.saml_relay_state_validity_period == "2m30s"
    logs = export_settings(LOGS)
    assert logs is not None and logs.url == "s3://acme-logs/logs/acme" and logs.retention is not None
    assert (logs.retention.keep_last, logs.retention.keep_days, logs.path_style) == (30, 7.5, True)


def _examples(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """(JSON pointer of the field in its file, one of its examples) for every documented example."""
    for example in node.get("examples") or []:
        yield pointer, example
    for key, sub in (node.get("properties") or {}).items():
        yield from _examples(sub, f"{pointer}/properties/{key}")
    if isinstance(node.get("items"), dict):
        yield from _examples(node["items"], f"{pointer}/items")


@pytest.mark.parametrize("name", ["backup", "sso", "logs"])
def test_every_documented_example_is_valid(name: str) -> None:
    found = list(_examples(settings.schema(name)))
    assert found, f"{name}.yml documents no example"
    for pointer, example in found:
        field = Draft202012Validator({"$ref": f"{name}.yml#{pointer}"}, registry=settings.registry(),
                                     format_checker=settings.format_checker())
        assert [e.message for e in field.iter_errors(example)] == [], (pointer, example)


def _fields(node: Any, resolver: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    node, resolver = settings.resolve(node, resolver)
    for key, sub in (node.get("properties") or {}).items():
        resolved, _ = settings.resolve(sub, resolver)
        yield (*path, key), resolved
        yield from _fields(sub, resolver, (*path, key))
    for extra in ("items", "additionalProperties"):
        if isinstance(node.get(extra), dict):
            yield from _fields(node[extra], resolver, (*path, extra))


@pytest.mark.parametrize("name", ["backup", "sso", "logs"])
def test_every_field_has_a_type_and_a_description(name: str) -> None:
    for path, node in _fields(settings.schema(name), settings.root_resolver(name)):
        assert "type" in node or "enum" in node, f"{name}: {'.'.join(path)} has no type"
        assert str(node.get("description") or "").strip(), f"{name}: {'.'.join(path)} has no description"


# -- a bad value of each kind is refused, naming the field ----------------------------------------------
@pytest.mark.parametrize(("path", "value", "field", "words"), [
    (("store", "checksum_mode"), "sometimes", "backup.store.checksum_mode", "is not one of"),  # enum
    (("store", "bucket"), ..., "backup.store.bucket", "is required"),  # required
    (("store", "bucket"), 5, "backup.store.bucket", "is not of type 'string'"),  # type
    (("store", "path_style"), "yes", "backup.store.path_style", "is not of type 'boolean'"),
    (("store", "region"), "", "backup.store.region", "should be non-empty"),  # minLength
    (("store", "colour"), "blue", "backup.store", "unknown key 'colour'"),  # additionalProperties
    (("jobs",), 33, "backup.jobs", "greater than the maximum"),  # maximum
    (("retention", "keep_weekly"), -1, "backup.retention.keep_weekly", "less than the minimum"),  # minimum
    (("paths", "metrics_dir"), "backup/metrics", "backup.paths.metrics_dir", "is not accepted here"),  # pattern
    (("paths", "env_file"), "/etc/sfp/a.env\n/etc/cron.d/x", "backup.paths.env_file", "control character"),
    (("store", "credentials", "secret_access_key"), 12345, "backup.store.credentials.secret_access_key", "has the wrong type"),
])
def test_backup_field_kinds_are_refused_by_name(path: tuple[str, ...], value: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(changed(BACKUP, path, value))
    found = {p.where: p.message for p in err.value.problems}
    assert field in found and words in found[field], found
    assert "s3cr3t-value" not in str(err.value) and "12345" not in str(err.value)


@pytest.mark.parametrize(("path", "value", "field", "words"), [
    (("saml", 0, "name"), "Acme Okta", "saml[0].name", "must be lower-case"),  # pattern
    (("saml", 0, "name"), ..., "saml[0].name", "is required"),  # required
    (("saml", 0, "domains"), [], "saml[0].domains", "non-empty list"),  # minItems
    (("saml", 0, "domains", 0), "acme", "saml[0].domains[0]", "is not a domain name"),  # item pattern
    (("saml", 0, "name_id_format"), "urn:nope", "saml[0].name_id_format", "not supported by GoTrue"),  # enum
    (("saml", 1, "metadata_url"), "https://b.example/md", "saml[1]", "exactly one of metadata_url or metadata_file"),
    (("saml", 0, "attribute_mapping", "keys", "email"), "mail", "saml[0].attribute_mapping.keys.email", "name / names"),
    (("oidc", 0, "url"), ..., "oidc[0].url", "is required"),  # keycloak needs its realm URL (if/then)
    (("oidc", 1, "issuer"), ..., "oidc[1].issuer", "is required"),  # custom needs its issuer (if/then)
    (("oidc", 0, "provider"), "keycloack", "oidc[0].provider", "is not a GoTrue built-in provider"),
    (("oidc", 0, "skip_nonce_check"), "yes", "oidc[0].skip_nonce_check", "true or false"),  # boolean
    (("oidc", 0, "client_id"), 7, "oidc[0].client_id", "must be a string, not int"),  # type
    (("oidc", 0, "tenant"), "x", "oidc[0].tenant", "is not a known setting"),  # additionalProperties
    (("oidc", 1, "scopes"), "openid email", "oidc[1].scopes", "list of scope names"),
    (("saml_relay_state_validity_period",), "2 minutes", "saml_relay_state_validity_period", "Go duration"),
    (("allow_hosts", 0), "http://169.254.169.254/latest", "allow_hosts[0]", "not a host name or IP address"),
    (("allow_hosts", 1), "[fe80::1::2]", "allow_hosts[1]", "not a host name or IP address"),  # exact IP: Python
])
def test_sso_field_kinds_are_refused_by_name(path: tuple[str | int, ...], value: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        sso_config.parse_sso_settings(changed(SSO, path, value))
    found = {p.where: p.message for p in err.value.problems}
    assert f"sfp_org.sso.{field}" in found and words in found[f"sfp_org.sso.{field}"], found


@pytest.mark.parametrize("key", ["SERVICE_ROLE_KEY", "SSO_CORP\n", "SSO_CORP\nPOSTGRES_PASSWORD", "sso_corp"])
def test_a_client_secret_can_name_only_an_sso_vault_key(key: str) -> None:
    # Any other vault name would send one of the org's own secrets to the IdP; a final newline is
    # refused too (a pattern's `$` would let it by).
    with pytest.raises(ConfigError) as err:
        sso_config.parse_sso_settings(changed(SSO, ("oidc", 1, "client_secret_vault_key"), key))
    found = {p.where: p.message for p in err.value.problems}
    assert "is not an SSO secret's name" in found["sfp_org.sso.oidc[1].client_secret_vault_key"], found


def test_a_client_secret_in_the_inventory_is_named_never_quoted() -> None:
    bad = changed(SSO, ("oidc", 1, "client_secret"), "hunter2-value")
    problems = sso_check("acme", {"sfp_org_sso": bad})
    assert [(p.where, p.message) for p in problems] == [
        ("host_vars/acme/sso.yml: sfp_org_sso.oidc[1].client_secret", "secrets do not belong in the inventory")]
    assert "SSO_CORP_CLIENT_SECRET" in str(problems[0].hint) and "hunter2" not in str(problems)


def test_sso_problems_read_top_to_bottom_one_per_field() -> None:
    # The schema and the rules across providers both have something to say of saml[1].domains[0];
    # it is named once, and in the order the file is written.
    bad = changed(changed(SSO, ("saml", 1, "domains"), ["ACME.com", "x"]), ("saml", 0, "name"), "Bad Name")
    bad["zz"] = 1
    problems = sso_check("acme", {"sfp_org_sso": bad})
    where = [p.where.removeprefix("host_vars/acme/sso.yml: sfp_org_sso") for p in problems]
    assert where == ["", ".saml[0].name", ".saml[1].domains[0]", ".saml[1].domains[1]"], problems
    assert problems[0].message == "unknown key 'zz'"
    assert "already assigned to SAML provider" in problems[2].message


@pytest.mark.parametrize(("path", "value", "field", "words"), [
    (("export", "bucket"), ..., "sfp_org.logs.export.bucket", "is required"),
    (("export", "bucket"), "Acme_Logs", "sfp_org.logs.export.bucket", "is not accepted here"),
    (("export", "prefix"), "/logs", "sfp_org.logs.export.prefix", "is not accepted here"),
    (("export", "endpoint_url"), "http://127.0.0.1:9000/path", "sfp_org.logs.export.endpoint_url", "is not accepted here"),
    (("export", "path_style"), "true", "sfp_org.logs.export.path_style", "is not of type 'boolean'"),
    (("export", "retention"), {}, "sfp_org.logs.export.retention", "should be non-empty"),
    (("export", "retention", "keep_last"), 0, "sfp_org.logs.export.retention.keep_last", "less than the minimum"),
    (("export", "retention", "keep_days"), 0, "sfp_org.logs.export.retention.keep_days", "less than or equal to the minimum"),
    (("export", "target"), "x", "sfp_org.logs.export", "unknown key 'target'"),
])
def test_logs_field_kinds_are_refused_by_name(path: tuple[str, ...], value: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        export_settings(changed(LOGS, path, value), where="host_vars/acme")
    found = {p.where: p.message for p in err.value.problems}
    assert f"host_vars/acme: {field}" in found and words in found[f"host_vars/acme: {field}"], found


# -- the schema's defaults are the ones every consumer gets ----------------------------------------
def test_with_defaults_fills_the_documented_backup_defaults() -> None:
    assert settings.with_defaults("backup", {"store": {"bucket": "b-1"}}) == {
        "store": {"bucket": "b-1", "prefix": "sfp", "endpoint_url": None, "region": "us-east-1", "path_style": False,
                  "checksum_mode": "when_supported", "credentials": {"source": "instance"}},
        "schedule": "17 3 * * *",
        "retention": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 0},
        "webhook_url": None,
        "jobs": 2,
    }  # paths: derived from the org when left out (installer.backup_inventory), no schema default
    s = parse_settings({"store": {"bucket": "b-1"}, "recipient": RECIPIENT})
    assert (s.store.prefix, s.store.region, s.store.credentials, s.schedule, s.jobs) == ("sfp", "us-east-1", "instance", "17 3 * * *", 2)
    assert (s.retention.keep_daily, s.retention.keep_weekly, s.retention.keep_monthly, s.retention.keep_yearly) == (7, 4, 12, 0)


def test_with_defaults_fills_the_documented_sso_and_logs_defaults() -> None:
    assert settings.with_defaults("sso", {}) == {"saml_allow_encrypted_assertions": False, "allow_hosts": [],
                                                 "allow_insecure_loopback": False}
    parsed = sso_config.parse_sso_settings({"oidc": [{"name": "c", "provider": "custom", "issuer": "https://i.example",
                                                      "client_id": "x"}]})
    assert parsed.oidc[0].scopes == ("openid", "email", "profile") and not parsed.oidc[0].skip_nonce_check
    assert parsed.oidc[0].client_secret_vault_key == "SSO_C_CLIENT_SECRET"
    assert settings.with_defaults("logs", {"export": {"bucket": "b-1"}}) == {
        "export": {"bucket": "b-1", "path_style": False, "prefix": ""}}
    assert export_settings({"export": {"bucket": "b-1"}}) is not None


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_models_take_their_defaults_from_the_schema() -> None:
    # Change the schema (its cached copy) before the libraries are imported: their defaults and
    # choices follow; nothing else holds them.
    out = _python(
        "import json\n"
        "from installer import settings\n"
        "b = settings.schema('backup')['properties']\n"
        "b['schedule']['default'] = '@hourly'\n"
        "b['retention']['properties']['keep_daily']['default'] = 3\n"
        "b['store']['properties']['prefix']['default'] = 'elsewhere'\n"
        "o = settings.schema('sso')['properties']['oidc']['items']['properties']\n"
        "o['scopes']['default'] = ['openid']\n"
        "o['provider']['enum'].append('newidp')\n"
        "from installer.backup import generate_recovery_key, parse_settings, Retention, BackupSettings\n"
        "from installer.sso import config\n"
        "s = parse_settings({'store': {'bucket': 'b-1'}, 'recipient': generate_recovery_key()[1]})\n"
        "p = config.parse_sso_settings({'oidc': [{'name': 'c', 'provider': 'custom', 'issuer': 'https://i.example', 'client_id': 'x'}]})\n"
        "print(json.dumps([s.schedule, s.retention.keep_daily, s.store.prefix, Retention().keep_daily,\n"
        "                  BackupSettings.__dataclass_fields__['schedule'].default, list(p.oidc[0].scopes),\n"
        "                  config.BUILTIN_PROVIDERS.get('newidp')]))\n")
    assert json.loads(out) == ["@hourly", 3, "elsewhere", 3, "@hourly", ["openid"], "NEWIDP"]


# -- one direction: the SSO inventory hook reaches the foundation, never installer.validate ----------
def test_sso_inventory_does_not_import_validate() -> None:
    out = _python("import sys, installer.sso_inventory, installer.backup_inventory\n"
                  "print(sorted(m for m in sys.modules if m == 'installer.validate'))")
    assert json.loads(out.replace("'", '"')) == []


def test_no_role_or_playbook_edits_the_import_path() -> None:
    found = [str(p.relative_to(REPO)) for top in ("roles", "playbooks") for p in (REPO / top).rglob("*.py")
             if "sys.path" in p.read_text()]
    assert found == []


def test_the_sso_planning_module_runs_without_a_toolkit_path(tmp_path: Path) -> None:
    """roles/supabase_sso's planning module, run by Ansible from a directory outside the checkout:
    it finds the SSO library installed with sfp-server, validates, and names a bad field."""
    bin_dir = Path(sys.executable).parent

    def run(settings_value: dict[str, Any]) -> dict[str, Any]:
        args = json.dumps({"api_url": "http://127.0.0.1:9", "settings": settings_value, "current": {}})
        done = subprocess.run(
            [str(bin_dir / "ansible"), "localhost", "-c", "local", "-M", str(REPO / "roles" / "supabase_sso" / "library"),
             "-m", "sfp_sso_plan", "-a", args, "-e", f"ansible_python_interpreter={sys.executable}", "-o"],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
            env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"})
        head, _, body = done.stdout.partition("=>")
        assert body.strip(), done.stdout + done.stderr
        result: dict[str, Any] = json.loads(body)
        result["_status"] = head
        return result

    empty = run({})
    assert "SUCCESS" in empty["_status"] and empty["requests"] == [] and empty["writes"] == 0, empty
    bad = run({"saml": [{"name": "Bad Name", "metadata_url": "https://idp.example/md", "domains": ["a.example"]}]})
    assert "FAILED" in bad["_status"] and "sfp_org_sso.saml[0].name" in bad["msg"], bad


def test_backup_host_paths_are_settings_derived_from_the_org_when_left_out() -> None:
    assert binv.metrics_dir("/opt/sfp/orgs/acme/", None) == "/opt/sfp/orgs/acme/backup/metrics"
    assert binv.env_file("acme", {"store": {"bucket": "b-1"}}) == "/etc/sfp/backup-acme.env"
    assert binv.metrics_dir("/opt/sfp/orgs/acme", BACKUP) == "/var/lib/node_exporter/textfile_collector"
    assert binv.env_file("acme", BACKUP) == "/etc/sfp/acme-s3.env"


def test_a_bad_backup_field_is_named_once_by_validate() -> None:
    # org.yml refers to backup.yml, so the org's own check names the block's schema problems; the
    # backup hook adds only what the schema cannot say.
    org = {"release": "v0.8.1", "public_url": "http://127.0.0.1:1", "ports": {"api": 1, "postgres": 2, "pooler_transaction": 3}}
    hostvars = {"sfp_org": {**org, "backup": {"store": {"bucket": "b-1"}, "jobs": 0}}}
    named = [p.where for p in settings.problems("acme", hostvars) + binv.check("acme", hostvars)]
    assert named == ["host_vars/acme: sfp_org.backup.jobs"]
    hostvars["sfp_org"]["backup"] = {"store": {"bucket": "Bad_Bucket"}}
    named = [p.where for p in settings.problems("acme", hostvars) + binv.check("acme", hostvars)]
    assert named == ["host_vars/acme: sfp_org.backup.store.bucket"]


@pytest.mark.parametrize("name", ["machine", "org", "backup", "sso", "logs", "report"])
def test_no_schema_holds_a_stray_null(name: str) -> None:
    """An unquoted `, ` inside a flow mapping's text (`{description: a, b}`) makes YAML read a key `b`
    with a null value: the description is cut and the schema carries junk. No schema node is null
    but the default of a field whose type admits null."""
    text = (Path(__file__).resolve().parents[2] / "installer" / "schema" / f"{name}.yml").read_text()

    def nulls(node: Any, where: str) -> Iterator[str]:
        if node is None:
            yield where
        elif isinstance(node, dict):
            nullable = "null" in (node.get("type") if isinstance(node.get("type"), list) else [node.get("type")])
            for key, value in node.items():
                if not (key == "default" and value is None and nullable):
                    yield from nulls(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from nulls(value, f"{where}[{i}]")

    assert list(nulls(yaml.safe_load(text), name)) == []
