"""Writes what follows from the settings schemas into the files Ansible and operators read.

    python -m installer.settings_docs           rewrite the generated blocks (scripts/gen-settings)
    python -m installer.settings_docs --check   exit 1 and name each file that is out of date

Between the marker lines of each file, and only there:
    roles/<role>/defaults/main.yml        every schema-mapped input of the role, with the schema's default
    roles/<role>/meta/argument_specs.yml  the same inputs' options (type, choices, default/required, description)
    playbooks/vars/org.yml                one line per role input the org model gives (installer.settings.role_inputs)
    inventory.example                     the machine settings and the example org, from defaults and examples
Role-only knobs (timeouts, paths on the host, computed names) stay hand-written outside the markers,
so a standalone role run sees the schema's defaults and nothing else has to repeat them.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import settings

REPO = Path(__file__).resolve().parents[1]
BEGIN = "# BEGIN settings: generated from installer/schema by `python -m installer.settings_docs`; edit the schema, not this block"
END = "# END settings"
# The areas walked for role variables; org.yml reaches backup.yml and logs.yml through $ref.
AREAS = ("machine", "org", "sso")
_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict", "array": "list"}


@dataclass(frozen=True)
class RoleVar:
    name: str
    area: str
    path: tuple[str, ...]
    node: dict[str, Any]
    resolver: Any
    required: bool
    defaults_only: bool
    """An x-role-defaults-var: the variable holds the schema default itself."""

    @property
    def role(self) -> str:
        return self.name.split("__", 1)[0]

    @property
    def default(self) -> Any:
        if not self.defaults_only and settings.ROLE_DEFAULTS_VAR in self.node:
            # Its defaults have a variable of their own: this one holds only the overrides.
            return settings.empty_of(self.node)
        found = settings.derived_default(self.node, self.resolver)
        if found is settings.MISSING and not self.required:
            return settings.empty_of(self.node) if isinstance(self.node.get("type"), str) else settings.MISSING
        return found

    @property
    def setting(self) -> str:
        head = settings.ORG_VAR if self.area == "org" else (settings.SSO_VAR if self.area == "sso" else "")
        return ".".join([p for p in (head, *self.path) if p])


def _required(area: str, path: tuple[str, ...]) -> bool:
    """Required all the way down from the area's root (sfp_org.ports, not smtp.host)."""
    node, resolver = settings.resolve(settings.schema(area), settings.root_resolver(area))
    for key in path:
        sub = (node.get("properties") or {})[key]
        # x-role-required: not required of the operator, but always given to the role (a computed default).
        if key not in (node.get("required") or []) and not sub.get("x-role-required"):
            return False
        node, resolver = settings.resolve(sub, resolver)
    return True


def role_vars() -> list[RoleVar]:
    found: list[RoleVar] = []
    present = settings.schema_names()
    for area in (a for a in AREAS if a in present):
        for path, node, resolver in settings.role_vars(area):
            required = bool(path) and _required(area, path)
            found += [RoleVar(n, area, path, node, resolver, required, False) for n in settings.names(node)]
            found += [RoleVar(n, area, path, node, resolver, False, True) for n in settings.names(node, settings.ROLE_DEFAULTS_VAR)]
    return found


# -- text ----------------------------------------------------------------------------------------------
def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in textwrap.wrap(" ".join(text.split()), 96)]


def _dump(value: Any, indent: str = "") -> list[str]:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return [f"{indent}{line}" for line in text.rstrip("\n").splitlines()]


def _description(node: dict[str, Any]) -> str:
    return " ".join(str(node.get("description") or "").split())


def _spec(node: dict[str, Any], resolver: Any, required: bool, default: Any, description: str) -> dict[str, Any]:
    node, resolver = settings.resolve(node, resolver)
    kind = node.get("type")
    spec: dict[str, Any] = {"type": _TYPES.get(kind, "raw") if isinstance(kind, str) else "raw"}
    if kind == "array":
        items, _ = settings.resolve(node.get("items") or {}, resolver)
        if isinstance(items.get("type"), str) and items["type"] in _TYPES:
            spec["elements"] = _TYPES[items["type"]]
    if "enum" in node:
        spec["choices"] = list(node["enum"])
    if required:
        spec["required"] = True
    elif default is not settings.MISSING:
        spec["default"] = default
    props = node.get("properties") or {}
    if kind == "object" and props and node.get("additionalProperties") is False:
        options = {}
        for key, sub in props.items():
            sub_node, sub_resolver = settings.resolve(sub, resolver)
            sub_default = settings.derived_default(sub_node, sub_resolver)
            sub_required = required and key in (node.get("required") or [])
            options[key] = _spec(sub_node, sub_resolver, sub_required, sub_default, _description(sub_node))
        spec["options"] = options
    spec["description"] = description or "See installer/schema."
    return spec


def defaults_block(role: str, found: list[RoleVar]) -> list[str]:
    lines: list[str] = []
    for var in (v for v in found if v.role == role):
        default = var.default
        if default is settings.MISSING:
            continue
        what = "The schema's default of" if var.defaults_only else "From"
        lines += _comment(f"{what} {var.setting}: {_description(var.node)}")
        lines += [f"{var.name}: {_dump(default)[0]}"] if not isinstance(default, dict | list) or not default else \
                 [f"{var.name}:", *_dump(default, "  ")]
        lines.append("")
    return lines[:-1] if lines else lines


def spec_block(role: str, found: list[RoleVar]) -> list[str]:
    options: dict[str, Any] = {}
    for var in (v for v in found if v.role == role):
        default = var.default
        text = f"{'Default' if var.defaults_only else 'From'} {var.setting}. {_description(var.node)}".strip()
        options[var.name] = _spec(var.node, var.resolver, var.required and not var.defaults_only, default, text)
        if var.defaults_only:
            options[var.name].pop("options", None)
    return _dump(options, "      ") if options else []


def vars_block() -> list[str]:
    return [f'{name}: "{{{{ sfp__inputs.{name} }}}}"' for name in settings.input_names()]


def machine_example() -> list[str]:
    lines: list[str] = []
    props = settings.schema("machine").get("properties") or {}
    for key, node in props.items():
        lines += _comment(_description(node))
        value = node["default"] if "default" in node else (node.get("examples") or [None])[0]
        lines += [f"{key}: {_dump(value)[0]}", ""]
    return lines[:-1]


def org_example() -> list[str]:
    """The example org: its required settings written out; every other one commented, with its
    default or an example, so the file lists every setting an operator may write."""
    root, resolver = settings.resolve(settings.schema("org"), settings.root_resolver("org"))
    lines = [f"{settings.ORG_VAR}:"]
    for key, sub in (root.get("properties") or {}).items():
        node, sub_resolver = settings.resolve(sub, resolver)
        if key in (root.get("required") or []) or node.get("x-example-written"):
            lines += [*_comment(_description(node), "  "), *_entry(key, node["examples"][0], "  "), ""]
            continue
        value = settings.derived_default(node, sub_resolver)
        if value is settings.MISSING:
            value = (node.get("examples") or [settings.MISSING])[0]
        if value is not settings.MISSING:
            entry = _entry(key, value, "  ")
            lines += [*_comment(_description(node), "  "), *(f"  # {line[2:]}" for line in entry), ""]
    return lines[:-1]


def _entry(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, dict | list) and value:
        return [f"{indent}{key}:", *_dump(value, indent + "  ")]
    return [f"{indent}{key}: {_dump(value)[0]}"]


# -- files -------------------------------------------------------------------------------------------
def targets(root: Path = REPO) -> Iterator[tuple[Path, list[str], str]]:
    """(file, generated lines, indent of the markers) for every generated block."""
    found = role_vars()
    for role in sorted({v.role for v in found}):
        base = root / "roles" / role
        if base.is_dir():
            yield base / "defaults" / "main.yml", defaults_block(role, found), ""
            yield base / "meta" / "argument_specs.yml", spec_block(role, found), "      "
    yield root / "playbooks" / "vars" / "org.yml", vars_block(), ""
    yield root / "inventory.example" / "group_vars" / "all" / "main.yml", machine_example(), ""
    yield root / "inventory.example" / "host_vars" / "acme" / "main.yml", org_example(), ""


class MarkersMissing(Exception):
    pass


def rendered(path: Path, lines: list[str], indent: str) -> str:
    text = path.read_text()
    begin, end = f"{indent}{BEGIN}\n", f"{indent}{END}\n"
    if text.count(begin) != 1 or text.count(end) != 1:
        raise MarkersMissing(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: needs exactly one pair "
                             f"of these marker lines where the generated settings go:\n{begin}{end}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    body = "".join(f"{line}\n" for line in lines)
    return f"{head}{begin}{body}{end}{tail}"


def stale(root: Path = REPO) -> list[str]:
    """What differs from the generator's output (or lacks markers), one line per file."""
    out = []
    for path, lines, indent in targets(root):
        try:
            if rendered(path, lines, indent) != path.read_text():
                out.append(f"out of date: {path.relative_to(root)}")
        except MarkersMissing as exc:
            out.append(str(exc))
    return out


def write(root: Path = REPO) -> tuple[list[Path], list[str]]:
    changed, errors = [], []
    for path, lines, indent in targets(root):
        try:
            text = rendered(path, lines, indent)
        except MarkersMissing as exc:
            errors.append(str(exc))
            continue
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)
    return changed, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installer.settings_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ from the schemas")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        print("\n".join(found)) if found else None
        return 1 if found else 0
    changed, errors = write()
    for path in changed:
        print(f"rewrote {path.relative_to(REPO)}")
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
