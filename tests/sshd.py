"""A second sshd (Debian's openssh-server) on a random loopback port, standing in for a remote host.

Temporary host key, an authorized test key (and a wrong one), a known_hosts file for the client;
root may log in with the key only. The "remote" machine is this one, so Docker, files and ports
are the same as locally: what differs is that everything goes through SSH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass(frozen=True)
class SshServer:
    port: int
    key: Path  # the authorized client key
    wrong: Path  # a key sshd does not accept
    known_hosts: Path
    log: Path  # sshd's log (LogLevel VERBOSE: one "Accepted publickey" line per connection)

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def as_dict(self) -> dict[str, str]:
        return {"url": self.url, "key": str(self.key), "wrong": str(self.wrong),
                "known_hosts": str(self.known_hosts), "port": str(self.port)}

    def ansible_vars(self, python: str) -> dict[str, str | int]:
        """Inventory variables that make Ansible reach this server as root over SSH."""
        return {
            "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": self.port,
            "ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
                                       "-o IdentitiesOnly=yes -o BatchMode=yes",
            "ansible_python_interpreter": python,
        }

    def accepted_logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey") if self.log.exists() else 0


@contextmanager
def running_sshd(directory: Path) -> Iterator[SshServer]:
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.fail("openssh-server and openssh-client are required (apt-get install openssh-server openssh-client)")
    d = directory
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
LogLevel VERBOSE
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp internal-sftp
""")
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = d / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-E", str(log), "-f", str(d / "sshd_config")])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    raise AssertionError(f"sshd did not start: {text}") from None
                time.sleep(0.1)
        yield SshServer(port, d / "client_key", d / "wrong_key", d / "known_hosts", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
