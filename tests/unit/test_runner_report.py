"""run_playbook's report: what the roles publish with set_stats as `sfp_report`, checked against
installer/schema/report.yml, is RunResult.reports[org][section]; task names mean nothing.

Real ansible-playbook runs through ansible-runner (two orgs on the local connection), with two
roles in two plays each publishing one section, as the toolkit's roles do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from installer import runner
from installer.errors import PlaybookFailed
from tests.conftest import org_config, write_yaml

ORGS = ("repa", "repb")


def quiet() -> Console:
    return Console(record=True, width=200, file=open("/dev/null", "w"))


def publish(section: str, value: str) -> dict[str, Any]:
    """A set_stats task as the roles write it: `value` is a Jinja expression of the section."""
    return {"name": f"Publish {section}", "ansible.builtin.set_stats": {
        "data": {"sfp_report": "{{ {inventory_hostname: {'" + section + "': " + value + "}} }}"},
        "aggregate": True}}


CHECKS = "{'msg': [{'check': 'disk', 'status': 'ok', 'detail': inventory_hostname ~ ' has room'}]}"
PRESENT = "{'msg': {'org_dir': inventory_hostname == 'repa', 'containers': ['sfp-' ~ inventory_hostname ~ '-db running']}}"


@pytest.fixture
def project(make_inventory: Callable[..., Path], tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """(inventory, playbook): two plays, each applying its own role (playbook-relative roles/)."""

    def make(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> tuple[Path, Path]:
        inv = make_inventory(orgs={o: org_config(18100 + 3 * i, 18101 + 3 * i, 18102 + 3 * i) for i, o in enumerate(ORGS)})
        play_dir = tmp_path / "play"
        write_yaml(play_dir / "roles" / "first" / "tasks" / "main.yml", first)
        write_yaml(play_dir / "roles" / "second" / "tasks" / "main.yml", second)
        playbook = play_dir / "report.yml"
        write_yaml(playbook, [
            {"name": "First", "hosts": "all", "gather_facts": False, "roles": ["first"]},
            {"name": "Second", "hosts": "all", "gather_facts": False, "roles": ["second"]},
        ])
        return inv, playbook

    return make


def run(inv: Path, playbook: Path, **kw: Any) -> runner.RunResult:
    return runner.run_playbook(str(playbook), inv, list(ORGS), inv / ".vault-pass", console=quiet(), **kw)


def expected(org: str) -> dict[str, Any]:
    return {
        "checks": {"msg": [{"check": "disk", "status": "ok", "detail": f"{org} has room"}]},
        "present": {"msg": {"org_dir": org == "repa", "containers": [f"sfp-{org}-db running"]}},
    }


def test_sections_of_two_roles_and_two_orgs_merge(project: Callable[..., tuple[Path, Path]]) -> None:
    # A task named like the old convention returns a result; it must not become a section.
    old_style = {"name": "report: x", "ansible.builtin.debug": {"msg": {"anything": 1}}}
    inv, playbook = project([publish("checks", CHECKS), old_style], [publish("present", PRESENT)])
    result = run(inv, playbook)
    assert result.ok, (result.failures, result.stdout_tail)
    assert result.reports == {org: expected(org) for org in ORGS}


def test_check_mode_publishes_the_report(project: Callable[..., tuple[Path, Path]]) -> None:
    inv, playbook = project([publish("checks", CHECKS)], [publish("present", PRESENT)])
    result = run(inv, playbook, check=True)
    assert result.ok, (result.failures, result.stdout_tail)
    assert result.reports == {org: expected(org) for org in ORGS}


def test_a_section_published_before_a_failure_is_read(project: Callable[..., tuple[Path, Path]]) -> None:
    # The preflight role's shape: report every check, then fail when one failed. The CLI prints them.
    failing = "{'msg': [{'check': 'ports', 'status': 'fail', 'detail': 'in use: 18100'}]}"
    stop = {"name": "Stop", "ansible.builtin.fail": {"msg": "preflight failed"}, "when": "inventory_hostname == 'repa'"}
    inv, playbook = project([publish("checks", failing), stop], [publish("present", PRESENT)])
    result = run(inv, playbook)
    assert not result.ok
    assert [(h, m) for h, _, m in result.failures] == [("repa", "preflight failed")]
    assert result.reports["repa"] == {"checks": {"msg": [{"check": "ports", "status": "fail", "detail": "in use: 18100"}]}}
    # The other org went on to the second play.
    assert set(result.reports["repb"]) == {"checks", "present"}


def test_a_malformed_section_is_refused_naming_it(project: Callable[..., tuple[Path, Path]]) -> None:
    # org_dir must be a boolean: a string "yes" would read as true whatever the host said.
    bad = "{'msg': {'org_dir': 'yes', 'containers': []}}"
    inv, playbook = project([publish("checks", CHECKS)], [publish("present", bad)])
    with pytest.raises(PlaybookFailed) as caught:
        run(inv, playbook)
    text = str(caught.value)
    assert "section present: msg.org_dir: must be of type boolean" in text, text
    # Both orgs published the bad section; both are named, in name order, whichever finished first.
    assert text.index("report for repa is malformed") < text.index("report for repb is malformed"), text
    assert "installer/schema/report.yml" in text


def test_a_malformed_report_of_a_failed_run_names_the_failure_too(project: Callable[..., tuple[Path, Path]]) -> None:
    stop = {"name": "Stop", "ansible.builtin.fail": {"msg": "the host said no"}}
    inv, playbook = project([publish("checks", "{'msg': [{'check': 'disk'}]}"), stop], [])
    with pytest.raises(runner.ReportInvalid) as caught:
        run(inv, playbook)
    text = str(caught.value)
    assert "section checks: msg.0: 'status' is missing" in text, text
    assert "the run also failed" in text and "repa: Stop: the host said no" in text


def test_an_undeclared_section_is_refused_naming_it(project: Callable[..., tuple[Path, Path]]) -> None:
    inv, playbook = project([publish("checks", CHECKS)], [publish("probe", "{'stdout': 'x'}")])
    with pytest.raises(runner.ReportInvalid) as caught:
        run(inv, playbook)
    assert "section probe: not declared in installer/schema/report.yml" in str(caught.value)


def test_a_missing_field_is_named() -> None:
    with pytest.raises(runner.ReportInvalid) as caught:
        runner.read_report({"sfp_report": {"acme": {"sso": {"msg": {"org": "acme", "results": []}}}}})
    assert "acme" in str(caught.value) and "section sso: msg: 'writes' is missing" in str(caught.value)


def test_a_report_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(runner.ReportInvalid, match="sfp_report is a list"):
        runner.read_report({"sfp_report": ["acme"]})


def test_no_report_no_sections() -> None:
    assert runner.read_report({}) == {}
    assert runner.read_report(None) == {}
    assert runner.read_report({"other_stat": 1}) == {}
