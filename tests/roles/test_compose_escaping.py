"""No operator setting can pull a secret out of .env: Docker Compose itself resolves the rendered files.

The supabase_stack role renders an org (plain ansible-playbook, `--tags render`: nothing starts)
whose every string setting carries `${SERVICE_ROLE_KEY}`, `$POSTGRES_PASSWORD` and other secret
references, and whose secrets hold quotes, `$`, backslashes and newlines. Then the real
`docker compose config` (no engine needed) resolves compose.yaml against .env, exactly as the
deploy will, and every value must come out as the text the operator wrote, every secret as its
value, and no secret anywhere a reference was not written by the template.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer import secrets
from tests.roles.test_roles_standalone import play

MARK = "zq7"  # in every operator value, to find where operator text lands
PULL = "${SERVICE_ROLE_KEY}/$POSTGRES_PASSWORD/${JWT_SECRET:-x}/$$ANON_KEY"
PUBLIC_URL = f"http://127.0.0.1:1/{MARK}/{PULL}"
SITE_URL = f"https://app.example/{MARK}?next={PULL}"
REDIRECTS = [f"https://a.example/{MARK}/${{DASHBOARD_PASSWORD}}", f"myapp://{MARK}/$SECRET_KEY_BASE"]
SMTP = {"host": f"{MARK}.$POSTGRES_PASSWORD.example", "port": 2525, "user": f"{MARK}${{SERVICE_ROLE_KEY}}",
        "admin_email": f"{MARK}$JWT_SECRET@example.test",
        "sender_name": f"{MARK} \"quoted\" 'single' \\ ${{VAULT_ENC_KEY}} 😀 ü \x85 \u2028 end\n      EVIL: injected"}
STUDIO = {"default_organization": f"{MARK} ${{SERVICE_ROLE_KEY}}", "default_project": f"{MARK} $POSTGRES_PASSWORD"}
REGISTRY = f"registry.example/{MARK}$POSTGRES_PASSWORD/"
# Auth's extra environment (SSO): a whole-value ${NAME} reference in a variable that carries a
# secret is one; anything else is text, a client id written as a reference too (it would be public).
AUTH_EXTRA = {"GOTRUE_SAML_PRIVATE_KEY": "${SAML_PRIVATE_KEY}",
              "GOTRUE_EXTERNAL_GITHUB_CLIENT_ID": "${SERVICE_ROLE_KEY}",
              "GOTRUE_EXTERNAL_GITHUB_URL": f"https://idp.example/{MARK}/${{JWT_SECRET}}"}
# Secrets an operator sets (`secrets set`): every character .env quoting must survive.
SMTP_PASS = "it's \"q\" $SERVICE_ROLE_KEY ${JWT_SECRET} back\\slash # not a comment\nsecond line\r\n  "
SAML_KEY = "-----BEGIN PRIVATE KEY-----\nMIIB$x\\y\n-----END PRIVATE KEY-----\n"


def org_secrets() -> dict[str, str]:
    values, _ = secrets.complete({})
    # A name that ends in a newline must not become a line of its own in .env.
    return {**values, "SMTP_PASS": SMTP_PASS, "SAML_PRIVATE_KEY": SAML_KEY, "STRAY\n": "x"}


def render(tmp_path: Path, values: dict[str, str]) -> Path:
    done = play(tmp_path, "supabase_stack", {
        "supabase_stack__org": "esc", "supabase_stack__release": "v0.8.1", "supabase_stack__base_dir": str(tmp_path / "sfp"),
        "supabase_stack__public_url": PUBLIC_URL, "supabase_stack__site_url": SITE_URL,
        "supabase_stack__additional_redirect_urls": REDIRECTS,
        "supabase_stack__ports": {"api": 18001, "postgres": 18002, "pooler_transaction": 18003, "analytics": 18004},
        "supabase_stack__smtp": SMTP, "supabase_stack__studio": STUDIO, "supabase_stack__registry_prefix": REGISTRY,
        "supabase_stack__log_rotation": {"max_size": f"{MARK}${{JWT_SECRET}}", "max_files": 3},
        "supabase_stack__auth_extra_env": AUTH_EXTRA, "supabase_stack__secrets": values,
    }, "--tags", "render")
    assert done.returncode == 0, done.stdout
    return tmp_path / "sfp" / "orgs" / "esc"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One render for the module: the org directory and the secrets it was rendered with."""
    values = org_secrets()
    return render(tmp_path_factory.mktemp("escaping"), values), values


def resolved(org_dir: Path) -> dict[str, Any]:
    done = subprocess.run(["docker", "compose", "-f", "compose.yaml", "--env-file", ".env", "config", "--format", "json"],
                          cwd=org_dir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def text(value: str) -> str:
    """The value a container gets: `compose config` writes a literal `$` as `$$` again."""
    return value.replace("$$", "$")


def leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in leaves(v, (*path, str(k)))]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in leaves(v, (*path, str(i)))]
    return [(path, str(node))]


def referenced(org_dir: Path, name: str) -> set[tuple[str, ...]]:
    """Where compose.yaml itself references secret `name` (a `$` that is not an escaped `$$`)."""
    raw = yaml.safe_load((org_dir / "compose.yaml").read_text())
    pattern = re.compile(r"\$\{?" + name + r"\b")
    return {path for path, value in leaves(raw) if pattern.search(value.replace("$$", ""))}


def test_operator_values_reach_containers_as_written(rendered: tuple[Path, dict[str, str]]) -> None:
    config = resolved(rendered[0])
    services = config["services"]
    auth = {k: text(v) for k, v in services["auth"]["environment"].items()}
    assert auth["GOTRUE_SITE_URL"] == SITE_URL
    assert auth["API_EXTERNAL_URL"] == auth["GOTRUE_JWT_ISSUER"] == PUBLIC_URL + "/auth/v1"
    assert auth["GOTRUE_URI_ALLOW_LIST"] == ",".join(REDIRECTS)
    assert auth["GOTRUE_SMTP_HOST"] == SMTP["host"] and auth["GOTRUE_SMTP_USER"] == SMTP["user"]
    assert auth["GOTRUE_SMTP_ADMIN_EMAIL"] == SMTP["admin_email"] and auth["GOTRUE_SMTP_SENDER_NAME"] == SMTP["sender_name"]
    assert "EVIL" not in auth
    assert auth["GOTRUE_EXTERNAL_GITHUB_CLIENT_ID"] == AUTH_EXTRA["GOTRUE_EXTERNAL_GITHUB_CLIENT_ID"]
    assert auth["GOTRUE_EXTERNAL_GITHUB_URL"] == AUTH_EXTRA["GOTRUE_EXTERNAL_GITHUB_URL"]
    studio = {k: text(v) for k, v in services["studio"]["environment"].items()}
    assert studio["SUPABASE_PUBLIC_URL"] == PUBLIC_URL
    assert studio["DEFAULT_ORGANIZATION_NAME"] == STUDIO["default_organization"]
    assert studio["DEFAULT_PROJECT_NAME"] == STUDIO["default_project"]
    assert text(services["storage"]["environment"]["STORAGE_PUBLIC_URL"]) == PUBLIC_URL
    assert text(services["kong"]["environment"]["JWT_ISSUER"]) == PUBLIC_URL + "/auth/v1"
    assert text(services["db"]["image"]).startswith(REGISTRY)
    assert text(services["db"]["logging"]["options"]["max-size"]) == f"{MARK}${{JWT_SECRET}}"


def test_secrets_resolve_only_where_the_template_references_them(rendered: tuple[Path, dict[str, str]]) -> None:
    org_dir, values = rendered
    config = resolved(org_dir)
    auth = config["services"]["auth"]["environment"]
    # .env keeps every secret exactly, whatever quotes, `$`, backslashes and newlines it holds.
    assert text(auth["GOTRUE_SMTP_PASS"]) == SMTP_PASS
    assert text(auth["GOTRUE_SAML_PRIVATE_KEY"]) == SAML_KEY
    assert text(config["services"]["db"]["environment"]["POSTGRES_PASSWORD"]) == values["POSTGRES_PASSWORD"]
    assert "STRAY" not in (org_dir / ".env").read_text()
    for name in ("SERVICE_ROLE_KEY", "POSTGRES_PASSWORD", "JWT_SECRET", "ANON_KEY", "DASHBOARD_PASSWORD",
                 "SECRET_KEY_BASE", "VAULT_ENC_KEY"):
        allowed = referenced(org_dir, name)
        leaked = [path for path, value in leaves(config) if values[name] in text(value) and path not in allowed]
        assert leaked == [], f"{name} resolved into {leaked}"


def test_operator_text_goes_only_into_compose_yaml(rendered: tuple[Path, dict[str, str]]) -> None:
    # kong.yml, vector.yml and the SQL have `$NAME` filled in by their own programs (kong-entrypoint.sh,
    # Vector): no operator value may be rendered into them, so only compose.yaml (escaped) has any,
    # besides deployed.json (the images deployed), which only the toolkit reads, as JSON.
    org_dir = rendered[0]
    carrying = sorted(str(p.relative_to(org_dir)) for p in org_dir.rglob("*")
                      if p.is_file() and p.name != ".env" and MARK in p.read_text(errors="replace"))
    assert carrying == ["compose.yaml", "deployed.json"]
