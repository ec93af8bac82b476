"""run_playbook's extra variables: never on a command line, delivered intact, taken as data.

A real ansible-playbook run (local connection) under the process-table sampler of
tests/proc_sampler.py: the secret passed as an extra variable reaches the play, and no process's
command line shows it. ansible-runner given `extravars=` would put them on argv as `-e {json}`.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ansible_runner  # type: ignore[import-untyped]
import pytest
from rich.console import Console

from installer import runner
from tests.conftest import org_config, write_yaml
from tests.proc_sampler import ProcSampler, positive_control

ORG = "argvorg"
SECRET = "AGE-SECRET-KEY-1QQSAMPLERTESTVALUE0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
PROBE: dict[str, Any] = {
    "identity": SECRET,
    "pem": PEM,
    # ansible-core templates extra vars; the CLI's are data: this must arrive as written, not as 42.
    "template": "{{ 6 * 7 }}",
    "quotes": "it's \"quoted\" \\ é",
    "flag": True,
    "count": 3,
    "nothing": None,
    "names": ["corp", "{{ 1 + 1 }}"],
    # Strings YAML would read as other types when unquoted: a history stamp, digits-only and
    # yes/no keys. ansible-core 2.19 turns `!unsafe "..."` of these into a datetime, int, bool.
    "looks_like": ["2026-12-03T03:10:24Z", "2026-12-03", "123", "0x1F", "1.5e3", "yes", "off", "null", "~", ".inf"],
}

PLAYBOOK = """\
- name: Probe
  hosts: all
  gather_facts: false
  tasks:
    - name: probe
      ansible.builtin.debug:
        var: sfp_probe
    - name: types
      ansible.builtin.debug:
        msg: "{{ [sfp_probe.flag | type_debug, sfp_probe.count | type_debug, sfp_probe.nothing is none] }}"
    # Keeps ansible-playbook alive a little longer than its start-up, for the sampler.
    - name: Wait
      ansible.builtin.command: sleep 0.5
      changed_when: false
"""


def quiet() -> Console:
    return Console(record=True, width=200, file=open("/dev/null", "w"))


def results(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task name, the result of its successful run (the debug tasks' output)."""
    return {e["event_data"]["task"]: e["event_data"].get("res", {}) for e in events if e.get("event") == "runner_on_ok"}


def test_sampler_catches_a_secret_on_argv() -> None:
    caught, runs = positive_control()
    assert caught == runs


def test_extravars_reach_the_play_through_a_private_file_not_argv(
        make_inventory: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = make_inventory(orgs={ORG: org_config(18000, 18001, 18002)})
    playbook = tmp_path / "probe.yml"
    playbook.write_text(PLAYBOOK)
    seen: dict[str, Any] = {}
    real_run = ansible_runner.run

    def checked_run(**kwargs: Any) -> Any:
        # What ansible-runner is given, and the file it will point ansible-playbook at.
        private = Path(kwargs["private_data_dir"])
        seen["kwargs"] = set(kwargs)
        seen["modes"] = [stat.S_IMODE(p.stat().st_mode) for p in (private, private / "env", private / "env" / "extravars")]
        seen["text"] = (private / "env" / "extravars").read_text()
        seen["private"] = private
        return real_run(**kwargs)

    monkeypatch.setattr(runner.ansible_runner, "run", checked_run)
    events: list[dict[str, Any]] = []
    with ProcSampler() as sampler:
        result = runner.run_playbook(str(playbook), inv, [ORG], inv / ".vault-pass", console=quiet(),
                                     extravars={"sfp_probe": PROBE}, on_event=events.append)
    assert result.ok, (result.failures, result.stdout_tail)
    assert results(events)["probe"]["sfp_probe"] == PROBE
    assert results(events)["types"]["msg"] == ["bool", "int", True]

    assert "extravars" not in seen["kwargs"]
    assert seen["modes"] == [0o700, 0o700, 0o600]
    assert "!unsafe" in seen["text"]
    assert not seen["private"].exists()  # removed with its secrets after the run

    # The sampler watched ansible-playbook itself, which read the variables from that file.
    assert sampler.saw("ansible-playbook") and sampler.saw("/env/extravars"), sampler.command_lines()
    assert sampler.leaks({"identity": SECRET, "pem": PEM}) == {}


def test_no_extravars_no_file(make_inventory: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = make_inventory(orgs={ORG: org_config(18000, 18001, 18002)})
    playbook = tmp_path / "probe.yml"
    write_yaml(playbook, [{"name": "Nothing", "hosts": "all", "gather_facts": False,
                           "tasks": [{"name": "none", "ansible.builtin.debug": {"msg": "{{ sfp_probe | default('unset') }}"}}]}])
    files: list[bool] = []
    real_run = ansible_runner.run

    def checked_run(**kwargs: Any) -> Any:
        files.append((Path(kwargs["private_data_dir"]) / "env" / "extravars").exists())
        return real_run(**kwargs)

    monkeypatch.setattr(runner.ansible_runner, "run", checked_run)
    events: list[dict[str, Any]] = []
    result = runner.run_playbook(str(playbook), inv, [ORG], inv / ".vault-pass", console=quiet(), on_event=events.append)
    assert result.ok, (result.failures, result.stdout_tail)
    assert files == [False]
    assert results(events)["none"]["msg"] == "unset"
