"""hosts.yml edits (restore --to-host) through the round-trip writer: what the operator wrote stays."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from installer.errors import SfpError
from installer.hosts_file import move_host, move_host_in_file

HOSTS = """\
# The orgs and their machines (kept by every edit).
all:
  children:
    web:            # not an org group: never touched
      hosts:
        www1:
          ansible_port: 2222
    sfp_orgs:
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
      children:
        machine_a:
          vars:
            sfp_machine: hosta   # the old one
            ansible_connection: local
          hosts:
            acme:
            globex: null  # spare

        # the new machine, added after the old one failed
        machine_b:
          vars:
            sfp_machine: hostb
            ansible_host: 10.0.0.9
          hosts: {}
"""


def orgs_of(text: str) -> dict[str, object]:
    groups = yaml.safe_load(text)["all"]["children"]["sfp_orgs"]["children"]
    return {g: sorted(body.get("hosts") or {}) for g, body in groups.items()}


def test_a_move_keeps_comments_order_and_other_groups() -> None:
    new, left = move_host(HOSTS, "globex", "machine_b")
    assert left == ["machine_a"]
    for kept in ("# The orgs and their machines (kept by every edit).", "# not an org group: never touched",
                 "sfp_machine: hosta   # the old one", "# the new machine, added after the old one failed",
                 'ansible_python_interpreter: "{{ ansible_playbook_python }}"', "globex:  # spare"):
        assert kept in new, kept
    # key order as written: web before sfp_orgs, vars before hosts, machine_a before machine_b
    assert new.index("web:") < new.index("sfp_orgs:") < new.index("machine_a:") < new.index("machine_b:")
    assert new.index("sfp_machine: hostb") < new.index("globex:")
    # only the org's line moved (and machine_b's `hosts: {}` became a block): every other line is kept, in order
    def others(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if "globex" not in ln and ln.strip() not in ("hosts:", "hosts: {}")]

    before_lines, after_lines = others(HOSTS), others(new)
    assert after_lines == before_lines


def test_the_result_reads_as_the_old_inventory_with_the_org_moved() -> None:
    new, _ = move_host(HOSTS, "globex", "machine_b")
    expected = yaml.safe_load(HOSTS)
    del expected["all"]["children"]["sfp_orgs"]["children"]["machine_a"]["hosts"]["globex"]
    expected["all"]["children"]["sfp_orgs"]["children"]["machine_b"]["hosts"] = {"globex": None}
    assert yaml.safe_load(new) == expected
    again, left = move_host(new, "acme", "machine_b")
    assert left == ["machine_a"]
    assert orgs_of(again) == {"machine_a": [], "machine_b": ["acme", "globex"]}
    assert "hosts: {}" in again  # an emptied group is an empty mapping, not null


def test_top_level_org_group_and_a_group_without_hosts() -> None:
    text = "sfp_orgs:\n  children:\n    a:\n      hosts:\n        x:\n    b:\n      vars:\n        ansible_host: h\n"
    new, left = move_host(text, "x", "b")
    assert left == ["a"]
    assert yaml.safe_load(new) == {"sfp_orgs": {"children": {"a": {"hosts": {}}, "b": {
        "vars": {"ansible_host": "h"}, "hosts": {"x": None}}}}}


def test_an_org_with_variables_in_hosts_yml_is_refused() -> None:
    text = HOSTS.replace("            acme:\n", "            acme:\n              ansible_port: 2\n")
    with pytest.raises(SfpError) as exc:
        move_host(text, "acme", "machine_b")
    assert "acme has variables written in hosts.yml" in exc.value.message
    assert "yourself" in (exc.value.hint or "")


def test_no_org_group_is_refused() -> None:
    with pytest.raises(SfpError) as exc:
        move_host("all:\n  hosts:\n    x:\n", "x", "b")
    assert "no sfp_orgs children mapping" in exc.value.message


def test_the_file_is_replaced_and_the_old_bytes_returned(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(HOSTS)
    before, left = move_host_in_file(path, "acme", "machine_b")
    assert before == HOSTS.encode() and left == ["machine_a"]
    assert orgs_of(path.read_text()) == {"machine_a": ["globex"], "machine_b": ["acme"]}
    assert [p.name for p in tmp_path.iterdir()] == ["hosts.yml"]  # no temporary file left
