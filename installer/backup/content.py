"""What a set's objects may hold: rules restore applies even to a signed set.

The signature proves a set was made by the org's backup job; these rules bound what a set made
by a compromised job (or a bug) can do on restore, and `verify` applies them too:

- the roles script (pg_dumpall --globals-only) is parsed with PostgreSQL's own parser (pglast)
  and only role statements pass: CREATE/ALTER ROLE, role settings, role grants, parameter
  privileges, role comments and security labels, and the SET lines of pg_dumpall's preamble.
  psql then runs it, so no backslash may be left anywhere in it: psql meta-commands (`\\!`
  runs a shell, `\\o |cmd`, `\\copy … program`, `\\i`) start with one. The `\\restrict KEY` /
  `\\unrestrict KEY` lines PostgreSQL 15.14+ writes (themselves a defence against dump content)
  are the only backslash lines accepted, and are dropped;
- the settings object may put back only the files the toolkit backs up (db.KEY_FILES, by their
  fixed paths; the content must be what the database image writes there).

The per-database dumps are custom-format archives fed to pg_restore, which has no meta-commands;
what protects them is the signature (only the org's job makes them) and the digest of each
object in the signed manifest.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from ..errors import SfpError
from .db import KEY_FILES

_RESTRICT_LINE = re.compile(r"^\\(?:un)?restrict [A-Za-z0-9]+$")
# The settings pg_dumpall (and pg_dump) write at the top of a script; nothing else may be SET.
_PREAMBLE_SETTINGS = frozenset({
    "default_transaction_read_only", "client_encoding", "standard_conforming_strings", "statement_timeout",
    "lock_timeout", "idle_in_transaction_session_timeout", "transaction_timeout", "check_function_bodies",
    "xmloption", "client_min_messages", "row_security",
})
# pgsodium's root key as the database image's key script writes it: 32 bytes in hex.
_ROOT_KEY = re.compile(rb"^[0-9a-fA-F]{64}\n?$")


def refused_globals(why: str) -> SfpError:
    return SfpError(f"the roles script of the set (db/globals.sql) is refused, nothing was applied: {why}",
                    "a backup job writes only role statements there; restore an older set and check the org's host "
                    "and who can write to the bucket")


def _statement_problem(stmt: Any) -> str | None:
    """Why a parsed statement may not run from a roles script, or None when it may."""
    if isinstance(stmt, ast.CreateRoleStmt | ast.AlterRoleStmt | ast.AlterRoleSetStmt | ast.GrantRoleStmt):
        return None
    if isinstance(stmt, ast.GrantStmt) and stmt.objtype == enums.ObjectType.OBJECT_PARAMETER_ACL:
        return None
    if isinstance(stmt, ast.CommentStmt | ast.SecLabelStmt) and stmt.objtype == enums.ObjectType.OBJECT_ROLE:
        return None
    if isinstance(stmt, ast.VariableSetStmt):
        if stmt.kind == enums.VariableSetKind.VAR_SET_VALUE and not stmt.is_local and stmt.name in _PREAMBLE_SETTINGS:
            return None
        return f"SET {stmt.name} is not a setting of pg_dumpall's preamble" if stmt.name else "only SET name = value may run"
    return f"{type(stmt).__name__} is not a role statement"


def globals_script(text: str, existing_roles: set[str]) -> str:
    """The roles script to feed psql: only role statements, no backslash anywhere; raises SfpError otherwise.

    `CREATE ROLE` is left out for roles the target already has (its bootstrap superuser, and the
    roles an image's init scripts make): their `ALTER ROLE` statements still apply the attributes
    and password of the backup, and ON_ERROR_STOP stays usable for everything else.
    """
    lines = [ln for ln in text.splitlines() if not _RESTRICT_LINE.match(ln.strip())]
    source = "\n".join(lines)
    try:
        statements = parse_sql(source)
    except ParseError as exc:
        raise refused_globals(f"it is not SQL PostgreSQL parses ({exc})") from None
    out: list[str] = []
    problems: list[str] = []
    for raw in statements:
        start = raw.stmt_location or 0
        sql = (source[start:start + raw.stmt_len] if raw.stmt_len else source[start:]).strip()
        line = source.count("\n", 0, start) + 1
        problem = _statement_problem(raw.stmt)
        if problem is None and "\\" in sql:
            problem = "it holds a backslash (psql would read a meta-command)"
        if problem is not None:
            problems.append(f"statement at line {line} ({sql[:60]!r}…): {problem}")
            continue
        if isinstance(raw.stmt, ast.CreateRoleStmt) and raw.stmt.role in existing_roles:
            continue
        out.append(sql + ";")
    if problems:
        raise refused_globals("; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""))
    return "\n".join(out) + "\n"


def check_config_document(document: Any, org: str, set_id: str) -> dict[str, Any]:
    """The settings object of a set, checked: a mapping with `secrets` (names to strings) and only the
    key files the toolkit backs up, each with the content the database image writes. Raises SfpError."""
    def refuse(why: str) -> SfpError:
        return SfpError(f"the settings object of set {set_id} of {org} is refused, nothing was changed: {why}",
                        "restore an older set (`sfp-server backup list`), and check the org's host and who can write to the bucket")

    if not isinstance(document, dict):
        raise refuse("it is not a mapping")
    secrets = document.get("secrets")
    if not isinstance(secrets, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
        raise refuse("`secrets` is not a mapping of names to strings")
    ages = document.get("secret_ages") or {}
    if not isinstance(ages, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ages.items()):
        raise refuse("`secret_ages` is not a mapping of names to strings")
    if document.get("org") not in (None, org):
        raise refuse(f"it names org {document.get('org')!r}")
    files = document.get("key_files") or {}
    if not isinstance(files, dict):
        raise refuse("`key_files` is not a mapping")
    for path, text in files.items():
        if path not in KEY_FILES:
            raise refuse(f"key file {str(path)[:200]!r} is not one the toolkit backs up (only {', '.join(KEY_FILES)})")
        if not isinstance(text, str) or not _ROOT_KEY.match(text.encode("utf-8", "surrogateescape")):
            raise refuse(f"key file {path} does not hold a root key (64 hexadecimal digits)")
    return document


def key_files(document: dict[str, Any]) -> dict[str, bytes]:
    """The key files of a checked settings object, by the toolkit's own paths (never a path from the set)."""
    files = document.get("key_files") or {}
    return {path: files[path].encode("utf-8", "surrogateescape") for path in KEY_FILES if path in files}


def secret_ages(document: dict[str, Any], now: datetime) -> dict[str, str]:
    """When each secret of a checked settings object was made or last changed (sets made before
    ages were kept have none). Only stamps of secrets the set holds that parse as times with a zone
    and lie in the past: a stamp from the future would make a secret look newer than it is."""
    secrets = document.get("secrets") or {}
    out = {}
    for name, stamp in (document.get("secret_ages") or {}).items():
        try:
            at = datetime.fromisoformat(stamp)
        except ValueError:
            continue
        if name in secrets and at.tzinfo is not None and at <= now:
            out[name] = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out
