"""Reading an org's logs on a remote host over SSH: a second sshd (Debian's openssh-server) on a
random loopback port with a temporary host key and an authorized test key; the "remote" Docker
engine is this machine's, so the events must be the same as read locally."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sfp_logs_stack import Stack

from installer.errors import SfpError
from installer.logs import DockerEndpoint, LogQuery, read_events
from tests.sshd import free_port, running_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server.as_dict()


def test_remote_events_equal_local(stack: Stack, sshd: dict[str, str]) -> None:
    local = [e.to_dict() for e in read_events(LogQuery(org=stack.a.name))]
    with DockerEndpoint(sshd["url"], identity_file=sshd["key"], known_hosts_file=sshd["known_hosts"]) as ep:
        ep.check()
        remote = [e.to_dict() for e in read_events(LogQuery(org=stack.a.name), endpoint=ep)]
        assert {r["host"] for r in remote} == {"127.0.0.1"}
        for r in remote:
            r["host"] = "local"
        assert remote == local
        # filters work the same through SSH
        errs = list(read_events(LogQuery(org=stack.a.name, services=["db"], level="fatal"), endpoint=ep))
        assert any("password authentication failed" in e.message for e in errs)
        assert [e.service for e in read_events(LogQuery(org=stack.b.name, tail=3), endpoint=ep)]
    with pytest.raises(SfpError) as exc:
        read_events(LogQuery(org="no-such-org-x3"),
                    endpoint=DockerEndpoint(sshd["url"], identity_file=sshd["key"], known_hosts_file=sshd["known_hosts"]))
    assert "no-such-org-x3" in exc.value.message


def test_wrong_key_is_a_clear_error(sshd: dict[str, str]) -> None:
    ep = DockerEndpoint(sshd["url"], identity_file=sshd["wrong"], known_hosts_file=sshd["known_hosts"])
    with pytest.raises(SfpError) as exc:
        ep.check()
    assert "refused the key" in exc.value.message
    assert exc.value.hint and "authorized_keys" in exc.value.hint
    with pytest.raises(SfpError) as exc:
        list(read_events(LogQuery(org="x"), endpoint=ep))
    assert "refused the key" in exc.value.message
    ep.close()


def test_unknown_host_key_and_unreachable_host(sshd: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty_known_hosts").write_text("")
    ep = DockerEndpoint(sshd["url"], identity_file=sshd["key"], known_hosts_file=str(tmp_path / "empty_known_hosts"))
    with pytest.raises(SfpError) as exc:
        ep.check()
    assert "host key" in exc.value.message
    ep.close()
    closed = DockerEndpoint(f"ssh://root@127.0.0.1:{free_port()}", identity_file=sshd["key"],
                            known_hosts_file=sshd["known_hosts"], connect_timeout=5)
    with pytest.raises(SfpError) as exc:
        closed.check()
    assert "cannot reach" in exc.value.message
    closed.close()


def test_follow_through_ssh_stops_cleanly(stack: Stack, sshd: dict[str, str]) -> None:
    import threading

    from installer.logs import follow_events

    stop = threading.Event()
    with DockerEndpoint(sshd["url"], identity_file=sshd["key"], known_hosts_file=sshd["known_hosts"]) as ep:
        events = follow_events(LogQuery(org=stack.a.name, services=["auth"], tail=1), endpoint=ep, stop=stop,
                               poll_interval=0.5)
        first = next(events)
        assert first.service == "auth" and first.host == "127.0.0.1"
        name = stack.a.containers["auth"]
        subprocess.run(["docker", "exec", name, "sh", "-c", "echo 'remote follow marker' > /proc/1/fd/1"], check=True)
        for ev in events:
            if ev.message == "remote follow marker":
                break
        stop.set()
        events.close()


def test_ssh_command_quotes_arguments() -> None:
    ep = DockerEndpoint("ssh://deploy@db1.example:2222", identity_file="/k", known_hosts_file="/kh")
    cmd = ep.command(["logs", "--since", "1.5", "sfp-a-db; rm -rf /"])
    assert cmd[0] == "ssh" and "-p" in cmd and cmd[cmd.index("-p") + 1] == "2222"
    assert cmd[cmd.index("-l") + 1] == "deploy" and cmd[-2] == "db1.example"
    assert cmd[-1] == "docker logs --since 1.5 'sfp-a-db; rm -rf /'"
    assert "BatchMode=yes" in cmd and "UserKnownHostsFile=/kh" in cmd
    assert ep.host == "db1.example"
    ep.close()
