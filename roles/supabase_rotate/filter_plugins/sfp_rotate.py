"""Jinja filters of a secret rotation: PostgreSQL password verifiers, and which services read a secret.

A password reaches the database only as a SCRAM-SHA-256 verifier made here, on the controller
(RFC 5802 and RFC 7677, PostgreSQL's storage format). The statement that sets it holds no password,
so a server that logs it, an error message that quotes it, or a process listing shows nothing a
client could log in with. Written with hashlib rather than a SCRAM library because the controller's
Ansible may run on an interpreter without one, and the format is a few lines of the standard
library; tests/roles/test_rotate_filters.py checks it against verifiers PostgreSQL itself made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
_VERIFIER = re.compile(
    r"SCRAM-SHA-256\$(?P<iterations>[0-9]{1,7}):(?P<salt>[A-Za-z0-9+/=]+)\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)\Z"
)
# PostgreSQL prepares a password with SASLprep before hashing it; for printable ASCII that is the
# identity. Other text would need the full profile, so it is refused rather than hashed differently.
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+\Z")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def _check_password(password: Any) -> str:
    if not isinstance(password, str) or not _PRINTABLE_ASCII.match(password):
        # Never the value itself: it is a secret.
        raise AnsibleFilterError(
            "the database password must be printable ASCII without spaces (the toolkit generates 32 hex characters); "
            "put such a value in the vault"
        )
    return password


def scram_verifier(password: Any, salt: str | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (a new random salt unless given)."""
    text = _check_password(password)
    raw_salt = base64.b64decode(salt) if salt else os.urandom(16)
    stored, server = _keys(text, raw_salt, int(iterations))
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${int(iterations)}:{b64(raw_salt)}${b64(stored)}:{b64(server)}"


def scram_matches(verifier: Any, password: Any) -> bool:
    """Whether `verifier` (pg_authid.rolpassword) accepts `password`. Anything that is not a SCRAM
    verifier (none, an md5 hash) does not: the rotation sets a new one."""
    match = _VERIFIER.match(verifier) if isinstance(verifier, str) else None
    if match is None:
        return False
    iterations = int(match["iterations"])
    if not 1 <= iterations <= 10_000_000:
        return False
    try:
        stored, server = _keys(_check_password(password), base64.b64decode(match["salt"], validate=True), iterations)
        return hmac.compare_digest(stored, base64.b64decode(match["stored"], validate=True)) and hmac.compare_digest(
            server, base64.b64decode(match["server"], validate=True))
    except ValueError:
        return False


def stale_roles(rows: Any, password: Any) -> list[str]:
    """From `rolname|rolpassword` rows, the roles that have a password the vault's does not match
    (in row order). A role without a password keeps having none."""
    _check_password(password)
    out = []
    for row in rows if isinstance(rows, list) else []:
        name, sep, verifier = str(row).partition("|")
        if sep and verifier and not scram_matches(verifier, password):
            out.append(name)
    return out


_REFERENCE = re.compile(r"\$\$|\$\{([A-Z_][A-Z0-9_]*)(?::?[-?+][^}]*)?\}")


def password_roles(rows: Any) -> list[str]:
    """From `rolname|rolpassword` rows, the roles that have a password (the ones a rotation changes)."""
    return [name for name, sep, verifier in (str(r).partition("|") for r in (rows if isinstance(rows, list) else []))
            if sep and verifier]


def _references(value: Any, names: set[str]) -> bool:
    if isinstance(value, str):
        # `$$` is compose's escape for a literal `$`: what follows it is text, not a reference.
        return any(m[1] in names for m in _REFERENCE.finditer(value) if m[1])
    if isinstance(value, dict):
        return any(_references(v, names) for v in value.values())
    if isinstance(value, list):
        return any(_references(v, names) for v in value)
    return False


def env_users(compose_text: Any, names: Any) -> list[str]:
    """Services of a compose file that read any of `names` from .env (a `${NAME}` reference anywhere
    in their definition), dependencies before dependents: the order to recreate them in."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise AnsibleFilterError("sfp_env_users: names must be a list of .env variable names")
    data = yaml.safe_load(str(compose_text or "")) or {}
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise AnsibleFilterError("sfp_env_users: the compose file has no services; install the org first")
    wanted = set(names)
    users = [s for s, body in services.items() if _references(body, wanted)]

    def deps(service: str) -> list[str]:
        body = services.get(service)
        raw = body.get("depends_on") if isinstance(body, dict) else None
        return [str(d) for d in raw] if isinstance(raw, (dict, list)) else []

    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(service: str) -> None:
        if service in ordered or service in visiting:
            return
        visiting.add(service)
        for dep in deps(service):
            visit(dep)
        visiting.discard(service)
        if service in users:
            ordered.append(service)

    # The database first even where compose names no dependency on it (Studio without Analytics):
    # every other reader of a database secret connects to it.
    for service in sorted(users, key=lambda s: s != "db"):
        visit(service)
    return ordered


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sfp_scram_verifier": scram_verifier, "sfp_scram_matches": scram_matches,
                "sfp_stale_roles": stale_roles, "sfp_password_roles": password_roles, "sfp_env_users": env_users}
