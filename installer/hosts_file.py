"""Edits of the inventory's hosts.yml that keep what the operator wrote: comments, key order, layout.

hosts.yml is the operator's file. The toolkit changes it in one case only (`restore --to-host`:
an org moves to another machine group), through ruamel.yaml's round-trip mode, which keeps the
comments and the order of everything it does not touch. The result is then read back with a
plain YAML parser and must equal the old inventory with only that org moved; anything else is
refused, so a layout the round trip cannot keep is never written.
"""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.tokens import CommentToken

from .errors import SfpError

ORG_GROUP = "sfp_orgs"


def _round_trip() -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 4096  # never re-wrap a long line the operator wrote
    return rt


def _machine_groups(data: Any, top: str) -> Any:
    """The `children:` mapping of the org group (under `all: children:` or at the top level), or None."""
    root = data.get("all", {}).get("children", {}) if isinstance(data, dict) and "all" in data else data
    orgs = root.get(top) if isinstance(root, dict) else None
    children = orgs.get("children") if isinstance(orgs, dict) else None
    return children if isinstance(children, dict) else None


def _hosts_normal(data: Any) -> Any:
    """`hosts:` null and `hosts: {}` mean the same to Ansible."""
    if isinstance(data, dict):
        return {k: ({} if k == "hosts" and v is None else _hosts_normal(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [_hosts_normal(v) for v in data]
    return data


def _expected(text: str, org: str, to_group: str, top: str) -> Any:
    """What a plain parser must read after the move: the same inventory with only `org` moved."""
    expected = copy.deepcopy(yaml.safe_load(text))
    groups = _machine_groups(expected, top)
    assert groups is not None  # checked on the round-trip copy first
    for body in groups.values():
        if isinstance(body, dict) and isinstance(body.get("hosts"), dict):
            body["hosts"].pop(org, None)
    target = groups.get(to_group) or {}
    groups[to_group] = target
    target["hosts"] = {**(target.get("hosts") or {}), org: None}
    return expected


def move_host(text: str, org: str, to_group: str, *, top: str = ORG_GROUP) -> tuple[str, list[str]]:
    """hosts.yml text with host `org` moved into the machine group `to_group` (a child of `top`).

    Returns (new text, the groups the org left). Refused (SfpError, with how to do it by hand) when
    the org has variables written in hosts.yml, the target is not a group mapping, or the result
    would read as anything but the old inventory with the org moved.
    """

    def by_hand(why: str) -> SfpError:
        return SfpError(f"cannot move {org} to machine group {to_group} in hosts.yml automatically: {why}",
                        f"move the line `{org}:` under `{to_group}: hosts:` in hosts.yml yourself, then run restore again")

    rt = _round_trip()
    try:
        data = rt.load(text)
    except Exception as exc:  # ruamel raises several kinds; the operator must fix the file either way
        raise by_hand(f"hosts.yml is not readable YAML ({exc})") from None
    groups = _machine_groups(data, top)
    if groups is None or not isinstance(groups.get(to_group, {}), dict | None):
        raise by_hand(f"no {top} children mapping with a group {to_group}")
    left = [g for g, body in groups.items() if isinstance(body, dict) and isinstance(body.get("hosts"), dict)
            and org in body["hosts"]]
    if any(groups[g]["hosts"][org] is not None for g in left):
        raise by_hand(f"{org} has variables written in hosts.yml")

    comment = None
    for g in left:
        comment = _remove_host(groups[g], org) or comment
    target = groups.get(to_group)
    if target is None:
        target = groups[to_group] = CommentedMap()
    if not isinstance(target.get("hosts"), dict):
        target["hosts"] = CommentedMap()
    target["hosts"][org] = None
    if comment is not None:
        target["hosts"].yaml_add_eol_comment(comment, org)

    buf = io.StringIO()
    rt.dump(data, buf)
    new = buf.getvalue()
    try:
        got = yaml.safe_load(new)
    except yaml.YAMLError:
        got = None
    if _hosts_normal(got) != _hosts_normal(_expected(text, org, to_group, top)):
        raise by_hand("the edited file would not be the same inventory with only the org moved")
    return new, left


def _remove_host(group: CommentedMap, org: str) -> str | None:
    """Delete `org:` from the group's hosts; returns its end-of-line comment (to carry it along).

    ruamel keeps the comment lines and blank lines that follow a key on that key: they belong to
    what comes next (often the next group), so they stay where they were, on the key before.
    """
    hosts: CommentedMap = group["hosts"]
    tokens = hosts.ca.items.pop(org, None)
    token = tokens[2] if tokens and len(tokens) > 2 else None
    keys = list(hosts)
    before = keys[keys.index(org) - 1] if keys.index(org) > 0 else None
    del hosts[org]
    if token is None:
        return None
    first, _, rest = str(token.value).partition("\n")
    if rest:
        _keep_after(group, hosts, before, "\n" + rest, token)
    first = first.strip()
    return first.lstrip("#").strip() or None if first.startswith("#") else None


def _keep_after(group: CommentedMap, hosts: CommentedMap, before: str | None, text: str, like: CommentToken) -> None:
    """Put comment lines back after the key `before` of `hosts` (or after `hosts:` when it is now empty)."""
    owner, key = (hosts, before) if before is not None else (group, "hosts")
    slots = owner.ca.items.setdefault(key, [None, None, None, None])
    if slots[2] is not None:
        slots[2].value = str(slots[2].value).rstrip("\n") + text
    else:
        slots[2] = CommentToken(text, like.start_mark, None)


def move_host_in_file(path: Path, org: str, to_group: str, *, top: str = ORG_GROUP) -> tuple[bytes, list[str]]:
    """Move `org` in the hosts file at `path` (atomically); returns the old bytes (to revert) and the groups left."""
    before = path.read_bytes()
    text, left = move_host(before.decode(), org, to_group, top=top)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return before, left


def set_org_release(vars_dir: Path, org: str, release: str) -> tuple[Path, bytes]:
    """Write `sfp_org.release: RELEASE` in the org's host_vars file that sets it, keeping the file's
    comments and layout. Returns (the file, its old bytes) so a caller can put it back.

    Refused, naming the file to edit by hand, when no file of host_vars/<org>/ sets sfp_org.release
    (the setting lives elsewhere) or the result would read as anything but that one change.
    """
    for path in sorted(vars_dir.glob("*.yml")) + sorted(vars_dir.glob("*.yaml")):
        before = path.read_bytes()
        plain = yaml.safe_load(before)
        if not (isinstance(plain, dict) and isinstance(plain.get("sfp_org"), dict) and "release" in plain["sfp_org"]):
            continue
        rt = _round_trip()
        data = rt.load(before.decode())
        data["sfp_org"]["release"] = release
        buf = io.StringIO()
        rt.dump(data, buf)
        expected = copy.deepcopy(plain)
        expected["sfp_org"]["release"] = release
        if yaml.safe_load(buf.getvalue()) != expected:
            break
        tmp = path.with_name(f".{path.name}.sfp-tmp")
        tmp.write_text(buf.getvalue())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
        return path, before
    raise SfpError(f"cannot write the release of {org} automatically: no file of {vars_dir} sets sfp_org.release as a plain value",
                   f"set `sfp_org: release: {release}` for {org} yourself, then run the command again")
