"""hosts.yml edits (restore --to-host) through the round-trip writer: what the operator wrote stays."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from installer import hosts_file
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


ORG_VARS = """\
# Settings of acme: kept by hand.
sfp_org:
  # pinned by the change board, ticket 4711
  release: v0.8.0
  public_url: http://127.0.0.1:8000   # the gateway
  ports: {api: 8000, postgres: 5432, pooler_transaction: 6543}
"""


def test_setting_the_release_keeps_the_operators_comments(tmp_path: Path) -> None:
    d = tmp_path / "host_vars" / "acme"
    d.mkdir(parents=True)
    (d / "backup.yml").write_text("backup__scheduler: cron\n")
    (d / "main.yml").write_text(ORG_VARS)
    (d / "main.yml").chmod(0o640)
    path, old = hosts_file.set_org_release(d, "acme", "v0.8.1")
    assert path == d / "main.yml" and old == ORG_VARS.encode()
    assert path.read_text() == ORG_VARS.replace("release: v0.8.0", "release: v0.8.1")
    assert path.stat().st_mode & 0o777 == 0o640
    assert (d / "backup.yml").read_text() == "backup__scheduler: cron\n"


def test_a_release_set_elsewhere_is_refused_naming_what_to_do(tmp_path: Path) -> None:
    d = tmp_path / "host_vars" / "acme"
    d.mkdir(parents=True)
    (d / "main.yml").write_text("sfp_org:\n  public_url: http://x\n")
    with pytest.raises(SfpError) as caught:
        hosts_file.set_org_release(d, "acme", "v0.8.1")
    assert "no file of" in caught.value.message and "sfp_org: release: v0.8.1" in str(caught.value.hint)
    assert (d / "main.yml").read_text() == "sfp_org:\n  public_url: http://x\n"
