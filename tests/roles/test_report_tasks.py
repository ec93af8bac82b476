"""The roles' side of the declared report (installer/schema/report.yml), read from the task files.

Every set_stats task publishes only `sfp_report`, aggregated, keyed by the inventory host, with
sections the schema declares; every declared section has a publisher; and no report reads a
secret: it names no secret-like variable, and of a `no_log` task's registered result it reads only
the fields listed here (each with the reason it holds no secret).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from jinja2 import nodes

from installer import runner

REPO = Path(__file__).resolve().parents[2]
TASK_FILES = sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml")])
SET_STATS = ("ansible.builtin.set_stats", "set_stats")
SECRET_LIKE = re.compile(r"secret|password|passwd|vault|key|identity|token|credential", re.I)
# Fields of a no_log task's result a report may carry, and why they hold no secret.
NO_LOG_FIELDS_ALLOWED = {
    # sfp_sso_plan / sfp_gotrue_admin: per provider its name, kind, action, Auth's id and the changed
    # field names (the plan holds vault key names; values are filled in on the host only).
    ("supabase_sso__r_plan", "results"), ("supabase_sso__r_plan", "writes"),
    ("supabase_sso__r_apply", "results"),
}
ENV = jinja2.Environment()


class _Loader(yaml.SafeLoader):
    """Ansible's YAML: `!unsafe` marks a string Ansible must not template (read here as the string)."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


@dataclass
class Publisher:
    file: str
    name: str
    task: dict[str, Any]
    no_log_registers: set[str] = field(default_factory=set)


def _tasks(items: Any, no_log: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every task (blocks and plays opened), with whether it runs under no_log."""
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        hidden = bool(item.get("no_log", no_log))
        yield item, hidden
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from _tasks(item.get(key), hidden)


def publishers() -> list[Publisher]:
    out: list[Publisher] = []
    for path in TASK_FILES:
        tasks = list(_tasks(yaml.load(path.read_text(), Loader=_Loader)))
        hidden = {str(t["register"]) for t, no_log in tasks if no_log and "register" in t}
        for task, _ in tasks:
            if any(k in task for k in SET_STATS):
                out.append(Publisher(str(path.relative_to(REPO)), str(task.get("name", "")), task, hidden))
    return out


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def sections(template: str) -> set[str]:
    """The section names of `{inventory_hostname: {'section': ..., ...}}` in a report expression."""
    found: set[str] = set()
    for d in ENV.parse(template).find_all(nodes.Dict):
        for pair in d.items:
            if isinstance(pair.key, nodes.Name) and pair.key.name == "inventory_hostname":
                assert isinstance(pair.value, nodes.Dict), template
                found |= {p.key.value for p in pair.value.items if isinstance(p.key, nodes.Const)}
    return found


def declared() -> set[str]:
    schema = yaml.safe_load((REPO / "installer" / "schema" / "report.yml").read_text())
    return set(schema["properties"])


PUBLISHERS = publishers()


def test_the_roles_publish_reports() -> None:
    assert len(PUBLISHERS) >= 8, [p.name for p in PUBLISHERS]


@pytest.mark.parametrize("pub", PUBLISHERS, ids=lambda p: f"{p.file}:{p.name}")
def test_a_report_task_publishes_declared_sections_under_sfp_report(pub: Publisher) -> None:
    args = next(pub.task[k] for k in SET_STATS if k in pub.task)
    assert set(args["data"]) == {runner.REPORT_STAT}
    assert args.get("aggregate") is True  # without it, a later section would replace the earlier ones
    assert not pub.task.get("no_log"), "a report that needs no_log holds a secret"
    found = sections(args["data"][runner.REPORT_STAT])
    assert found, "the report must be keyed {inventory_hostname: {section: ...}}"
    assert found <= declared(), f"undeclared sections {found - declared()}"


@pytest.mark.parametrize("pub", PUBLISHERS, ids=lambda p: f"{p.file}:{p.name}")
def test_a_report_reads_no_secret(pub: Publisher) -> None:
    args = next(pub.task[k] for k in SET_STATS if k in pub.task)
    for text in [*strings(args["data"]), *strings(pub.task.get("vars") or {})]:
        tree = ENV.parse(text)
        names = {n.name for n in tree.find_all(nodes.Name)}
        assert not {n for n in names if SECRET_LIKE.search(n)}, text
        for attr in tree.find_all(nodes.Getattr):
            if isinstance(attr.node, nodes.Name) and attr.node.name in pub.no_log_registers:
                assert (attr.node.name, attr.attr) in NO_LOG_FIELDS_ALLOWED, f"{attr.node.name}.{attr.attr} of a no_log task"
        bare = {n.name for n in tree.find_all(nodes.Name)} & pub.no_log_registers
        used_with_attr = {a.node.name for a in tree.find_all(nodes.Getattr) if isinstance(a.node, nodes.Name)}
        assert not bare - used_with_attr, f"a whole no_log result is published: {bare - used_with_attr}"


def test_every_declared_section_has_a_publisher() -> None:
    published: set[str] = set()
    for pub in PUBLISHERS:
        args = next(pub.task[k] for k in SET_STATS if k in pub.task)
        published |= sections(args["data"][runner.REPORT_STAT])
    assert published == declared()


def test_a_whole_no_log_result_is_caught() -> None:
    # The guard above, on a crafted task: publishing the plan (its requests) would be refused.
    pub = Publisher("crafted", "crafted", {"ansible.builtin.set_stats": {"data": {
        "sfp_report": "{{ {inventory_hostname: {'sso': {'msg': supabase_sso__r_plan.requests}}} }}"}, "aggregate": True}},
        {"supabase_sso__r_plan"})
    with pytest.raises(AssertionError, match=r"supabase_sso__r_plan\.requests of a no_log task"):
        test_a_report_reads_no_secret(pub)
