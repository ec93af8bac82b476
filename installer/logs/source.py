"""Read container logs from a Docker engine, on this machine or on a remote one over SSH.

Remote hosts are reached by running `docker` there through the system `ssh` client
(`ssh -o BatchMode=yes ... user@host docker logs ...`), over one multiplexed connection
(ControlMaster) per host. That is what `DOCKER_HOST=ssh://user@host` does underneath too (it runs
`ssh ... docker system dial-stdio`), but calling ssh ourselves lets us pass the key, port and
known_hosts file explicitly (the Docker CLI only takes them from ~/.ssh/config), never prompt
(BatchMode), and tell an operator exactly whether the key, the host key, the network or the
remote Docker engine is at fault. The remote host needs only the Docker CLI, which every Docker
engine host has; this machine needs only the OpenSSH client (and the Docker CLI for local reads).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import select
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO
from urllib.parse import urlsplit

from installer.errors import SfpError

from .event import ns_from_rfc3339

SERVICES: tuple[str, ...] = (
    "studio", "kong", "auth", "rest", "realtime", "storage", "imgproxy", "meta", "functions",
    "analytics", "vector", "db", "supavisor",
)

LABEL_ORG = "org.sfp.org"


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    org: str
    service: str
    state: str

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")


def _ns_arg(ns: int) -> str:
    """Docker's --since/--until accept `<seconds>.<nanoseconds>`."""
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{sec}.{frac:09d}"


@dataclass
class DockerEndpoint:
    """Where the Docker engine is: this machine (`url=None`) or `ssh://[user@]host[:port]`.

    `identity_file`, `known_hosts_file` and `ssh_options` (extra `-o` values) apply to SSH only.
    `name` is what events carry as their `host` (default: the SSH host, or `local`).
    """

    url: str | None = None
    identity_file: str | None = None
    known_hosts_file: str | None = None
    strict_host_key_checking: bool = True
    connect_timeout: int = 10
    ssh_options: Sequence[str] = ()
    name: str | None = None
    docker_binary: str = "docker"
    _control_dir: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme != "ssh" or not parts.hostname:
                raise SfpError(f"cannot read the host address {self.url!r}",
                               "write it as ssh://user@host or ssh://user@host:port, or leave it out for this machine")
            self._ssh_user = parts.username
            self._ssh_host = parts.hostname
            self._ssh_port = parts.port

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    @property
    def host(self) -> str:
        if self.name:
            return self.name
        return self._ssh_host if self.url is not None else "local"

    # ------------------------------------------------------------ commands

    def _ssh_base(self) -> list[str]:
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="sfp-ssh-")
        cmd = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
               "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C",
               "-o", "ControlPersist=30", "-o", "ServerAliveInterval=15", "-o", "LogLevel=ERROR"]
        if self.identity_file:
            cmd += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts_file:
            cmd += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
        cmd += ["-o", f"StrictHostKeyChecking={'yes' if self.strict_host_key_checking else 'no'}"]
        for opt in self.ssh_options:
            cmd += ["-o", opt]
        if self._ssh_port:
            cmd += ["-p", str(self._ssh_port)]
        if self._ssh_user:
            cmd += ["-l", self._ssh_user]
        return [*cmd, "--", self._ssh_host]

    def command(self, args: Sequence[str]) -> list[str]:
        if self.url is None:
            return [self.docker_binary, *args]
        return [*self._ssh_base(), " ".join(shlex.quote(a) for a in [self.docker_binary, *args])]

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def run(self, args: Sequence[str], timeout: float = 60) -> str:
        """Run a short docker command and return its stdout; errors become SfpError."""
        cmd = self.command(args)
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=self._env(), check=False)
        except FileNotFoundError:
            raise self._missing_binary(cmd[0]) from None
        except subprocess.TimeoutExpired:
            raise SfpError(f"the Docker engine on {self.host} did not answer within {timeout:.0f}s",
                           "check that the host is up and `docker info` works there") from None
        if proc.returncode != 0:
            raise self.error_for(proc.returncode, proc.stderr.decode("utf-8", "replace"))
        return proc.stdout.decode("utf-8", "replace")

    def popen(self, args: Sequence[str]) -> tuple[subprocess.Popen[bytes], IO[bytes] | None]:
        """Start a streaming docker command whose stdout and stderr come, in order, on one pipe.

        The Docker CLI writes each log frame to its stdout or stderr as it comes, one write after the
        other, so with both on one pipe the container's lines keep their order. Over SSH the two
        would travel as separate channels and be interleaved anew on arrival (even mid-line), so the
        remote shell joins them (`2>&1`) before ssh sees them; ssh's own complaints go to a file
        (returned) to explain a failure."""
        cmd = self.command(args)
        err_file: IO[bytes] | None = None
        try:
            if self.url is None:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self._env(), start_new_session=True)
            else:
                cmd[-1] += " 2>&1"
                err_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by raw_lines
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file,
                                        stdin=subprocess.DEVNULL, env=self._env(), start_new_session=True)
        except FileNotFoundError:
            if err_file is not None:
                err_file.close()
            raise self._missing_binary(cmd[0]) from None
        return proc, err_file

    def _missing_binary(self, binary: str) -> SfpError:
        if binary == "ssh":
            return SfpError("the ssh client is not installed on this machine",
                            "install OpenSSH's client (Debian: apt-get install openssh-client)")
        return SfpError(f"`{binary}` is not installed on this machine",
                        "install the Docker CLI (Debian: apt-get install docker.io or docker-ce-cli)")

    def error_for(self, returncode: int, stderr: str) -> SfpError:
        """Turn a failed ssh/docker run into what the operator should do next."""
        text = stderr.strip()
        low = text.lower()
        where = self.host
        if self.url is not None and returncode == 255:
            if "permission denied" in low or "too many authentication failures" in low:
                return SfpError(f"SSH to {self.url} refused the key: {text.splitlines()[-1] if text else ''}".rstrip(),
                                "check the identity file and that its public key is in the remote user's "
                                "authorized_keys (`ssh -i KEY user@host true` must work without a password)")
            if "host key verification failed" in low or "remote host identification has changed" in low:
                return SfpError(f"the SSH host key of {self._ssh_host} is unknown or has changed",
                                "verify the host's key and add it to the known_hosts file you use")
            if ("connection refused" in low or "timed out" in low or "no route" in low
                    or "could not resolve" in low or "name or service not known" in low
                    or "network is unreachable" in low or "connection closed" in low):
                return SfpError(f"cannot reach {self.url}: {text.splitlines()[-1] if text else 'no answer'}",
                                "check the address and port, that sshd runs there and that no firewall blocks it")
            return SfpError(f"SSH to {self.url} failed: {text or 'exit 255'}",
                            "run the same ssh command by hand to see what it needs")
        if returncode == 127 or "command not found" in low:
            return SfpError(f"the docker CLI is not installed on {where}",
                            "install the Docker CLI there (it comes with the Docker engine)")
        if "permission denied" in low and "docker" in low:
            return SfpError(f"the user may not use the Docker engine on {where}",
                            "log in as root or as a member of the docker group")
        if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low:
            return SfpError(f"the Docker engine on {where} is not running",
                            "start it (systemctl start docker) and try again")
        if "no such container" in low:
            return SfpError(f"the container is gone on {where}: {text}",
                            "it was removed while being read; run the command again")
        return SfpError(f"docker failed on {where}: {text or f'exit {returncode}'}",
                        "run the same docker command on that host to see what it needs")

    def check(self) -> None:
        """Reach the engine once (and open the shared SSH connection); raise SfpError if we cannot."""
        self.run(["version", "--format", "{{.Server.Version}}"], timeout=self.connect_timeout + 30)

    def close(self) -> None:
        if self._control_dir is not None and self.url is not None:
            base = self._ssh_base()
            subprocess.run([*base[:-2], "-O", "exit", "--", self._ssh_host], capture_output=True,
                           timeout=10, check=False)
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None

    def __enter__(self) -> DockerEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ discovery

    def list_containers(self, org: str, *, all_states: bool = True) -> list[Container]:
        fmt = ("{{.ID}}\t{{.Names}}\t{{.Label \"org.sfp.org\"}}\t{{.Label \"org.sfp.service\"}}\t"
               "{{.Label \"com.docker.compose.service\"}}\t{{.State}}")
        args = ["ps", "--no-trunc", "--filter", f"label={LABEL_ORG}={org}", "--format", fmt]
        if all_states:
            args.insert(1, "-a")
        out = self.run(args)
        found: list[Container] = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != 6:
                continue
            cid, name, label_org, service, compose_service, state = parts
            found.append(Container(cid, name, label_org or org, service or compose_service, state))
        found.sort(key=lambda c: (c.service, c.name))
        return found

    def list_orgs(self) -> list[str]:
        out = self.run(["ps", "-a", "--filter", f"label={LABEL_ORG}", "--format", "{{.Label \"org.sfp.org\"}}"])
        return sorted({line.strip() for line in out.splitlines() if line.strip()})

    def containers_for(self, org: str, services: Sequence[str] | None = None) -> list[Container]:
        """The org's containers (any state), narrowed to `services`; SfpError for an unknown org or
        service, or a service whose container does not exist (yet)."""
        containers = self.list_containers(org)
        if not containers:
            orgs = self.list_orgs()
            known = f"orgs on {self.host}: {', '.join(orgs)}" if orgs else f"no org runs on {self.host} yet"
            raise SfpError(f"org {org!r} has no containers on {self.host}",
                           f"check --org ({known}); deploy the org first if it is new")
        if not services:
            return containers
        unknown = [s for s in services if s not in SERVICES and s not in {c.service for c in containers}]
        if unknown:
            raise SfpError(f"unknown service{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
                           f"choose from: {', '.join(SERVICES)}")
        chosen = [c for c in containers if c.service in services]
        missing = [s for s in services if s not in {c.service for c in chosen}]
        if missing:
            have = ", ".join(sorted({c.service for c in containers}))
            raise SfpError(f"org {org!r} has no {', '.join(missing)} container on {self.host} (yet)",
                           f"deploy or start it first, or wait until it is created; this org has: {have}")
        return chosen

    # ------------------------------------------------------------ logs

    def logs_args(self, container: str, *, since_ns: int | None = None, until_ns: int | None = None,
                  tail: int | None = None, follow: bool = False) -> list[str]:
        args = ["logs", "--timestamps"]
        if since_ns is not None:
            args += ["--since", _ns_arg(since_ns)]
        if until_ns is not None:
            args += ["--until", _ns_arg(until_ns)]
        if tail is not None:
            args += ["--tail", str(tail)]
        if follow:
            args.append("--follow")
        return [*args, container]

    def raw_lines(self, container: str, *, since_ns: int | None = None, until_ns: int | None = None,
                  tail: int | None = None, follow: bool = False, idle: float | None = None,
                  ) -> Generator[tuple[int, str] | None, None, None]:
        """(docker time ns, line) of one container, streamed. With `idle`, yields None whenever no
        line came for that many seconds (so a caller can flush a pending multi-line entry)."""
        proc, err_file = self.popen(self.logs_args(container, since_ns=since_ns, until_ns=until_ns, tail=tail,
                                                   follow=follow))
        errors: list[str] = []
        try:
            for raw in _read_lines(proc, idle):
                if raw is None:
                    yield None
                    continue
                sp = raw.find(" ")
                ns = ns_from_rfc3339(raw[:sp]) if sp > 0 else None
                if ns is None:
                    # Not a timestamped log line: the docker CLI's or ssh's own stderr.
                    if len(errors) < 20:
                        errors.append(raw)
                    continue
                text = raw[sp + 1:]
                if text.endswith("\r"):
                    text = text[:-1]
                yield ns, text
            rc = proc.wait()
            if rc != 0 and not follow:
                if err_file is not None:
                    err_file.seek(0)
                    errors.append(err_file.read(65536).decode("utf-8", "replace"))
                raise self.error_for(rc, "\n".join(errors))
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            if err_file is not None:
                err_file.close()


_F_SETPIPE_SZ = 1031  # Linux fcntl
PIPE_SIZE = 1 << 20
READ_AHEAD_CHUNKS = 4


def _grow_pipe(fd: int) -> None:
    """A 1 MiB pipe (instead of 64 KiB): with several containers merged, the reader otherwise waits
    on each docker CLI process to be scheduled again for every few hundred lines."""
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)


def _chunks(fd: int, idle: float | None) -> Iterator[bytes | None]:
    while True:
        if idle is not None:
            ready, _, _ = select.select([fd], [], [], idle)
            if not ready:
                yield None
                continue
        chunk = os.read(fd, PIPE_SIZE)
        if not chunk:
            return
        yield chunk


def _read_ahead(fd: int) -> Iterator[bytes | None]:
    """Chunks read by a thread, at most READ_AHEAD_CHUNKS ahead (so memory stays bounded), so the
    docker CLI keeps streaming while this process parses and merges."""
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
    stop = threading.Event()

    def pump() -> None:
        try:
            while not stop.is_set():
                chunk = os.read(fd, PIPE_SIZE)
                while not stop.is_set():
                    try:
                        q.put(chunk or None, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if not chunk:
                    return
        except BaseException as exc:  # pragma: no cover - e.g. the fd closed under us
            with contextlib.suppress(queue.Full):
                q.put_nowait(exc)

    th = threading.Thread(target=pump, daemon=True, name="docker-logs-reader")
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                return
            yield item
    finally:
        stop.set()


def _read_lines(proc: subprocess.Popen[bytes], idle: float | None) -> Iterator[str | None]:
    """Lines, decoded as UTF-8 with invalid bytes replaced (never an error). Whole chunks are decoded
    at once, up to their last newline (a newline byte is never part of a multi-byte character, so
    this is the same as decoding line by line, only faster)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    _grow_pipe(fd)
    buf = b""
    for chunk in (_chunks(fd, idle) if idle is not None else _read_ahead(fd)):
        if chunk is None:
            yield None
            continue
        if buf:
            chunk = buf + chunk
        cut = chunk.rfind(b"\n")
        if cut < 0:
            buf = chunk
            continue
        buf = chunk[cut + 1:]
        yield from chunk[:cut].decode("utf-8", "replace").split("\n")
    if buf:
        yield buf.decode("utf-8", "replace")
