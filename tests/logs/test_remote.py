"""Reading an org's logs on a remote host over SSH: a second sshd (Debian's openssh-server) on a
random loopback port with a temporary host key and an authorized test key; the "remote" Docker
engine is this machine's, so the events must be the same as read locally."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sfp_logs_stack import Stack

from installer.errors import SfpError
from installer.logs import DockerEndpoint, LogQuery, read_events

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.fail("openssh-server and openssh-client are required (apt-get install openssh-server openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    keygen(d / "host_key")
    keygen(d / "client_key")
    keygen(d / "wrong_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / "host_key"}
AuthorizedKeysFile {d / "authorized_keys"}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp internal-sftp
""")
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"sshd did not start: {proc.stderr.read() if proc.stderr else ''}") from None
                time.sleep(0.1)
        yield {"url": f"ssh://root@127.0.0.1:{port}", "key": str(d / "client_key"), "wrong": str(d / "wrong_key"),
               "known_hosts": str(d / "known_hosts"), "port": str(port)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
