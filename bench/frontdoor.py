#!/usr/bin/env python3
"""Throughput and latency of the front door (roles/frontdoor) against the gateway it proxies to.

Measured side by side in one run, on loopback, HTTP keep-alive, a small JSON response (a few
hundred bytes, what a PostgREST row or a health check returns):

  direct      wrk -> the gateway stand-in, plain HTTP on 127.0.0.1:<free port>
  front door  wrk -> Apache on 127.0.0.1:18443, TLS with the org's name as SNI and Host, the
              org's virtual host as roles/frontdoor writes it -> the same gateway stand-in

The role is applied for real with ansible-playbook, as tests/frontdoor runs it (its Runner), to
this machine's Apache, with a certificate of the test CA (tests/frontdoor/pki.py) passed as source
`provided`. The bench holds the tests' Apache lock (a pytest run on the machine may hold it; the
bench waits) and puts Apache back as it found it (stopped, /etc/apache2 as saved, every file of
the role removed), also on Ctrl-C or a failure.

The two sides run alternately (--rounds each, the order flipped every round) and the medians are
compared, so drift in the machine's load falls on both alike. Baseline: the direct requests per
second. Goal: front door rps / direct rps >= 0.8. The p99 latency the front door adds (its p99
minus the direct p99) is reported beside it; wrk keeps --connections busy (a closed loop), so
latency there also reflects throughput (about connections / rps).

The gateway stand-in is Debian's nginx (package nginx-light) answering from its config, run
privately (its own prefix and config in a temporary directory, a free loopback port; /etc/nginx
and port 80 are never used) with worker_processes auto and no access log. Kong is OpenResty, that
is nginx plus Lua plugins on every request, so the real gateway is slower than this stand-in: a
slower backend hides more of the front door's cost, so the ratio measured here is conservative.

The client is wrk (package wrk): several threads, HTTP/1.1 keep-alive, latency percentiles. ab
(apache2-utils) was not used: it speaks HTTP/1.0 with one thread, and on this small a machine it
would be the bottleneck of the direct side. wrk takes SNI from the URL's host and resolves that
name itself, so the front-door runs of wrk start in a private mount namespace whose /etc/hosts (a
bind mount, seen by wrk alone) maps the org's name to 127.0.0.1; the machine's /etc/hosts is never
written. wrk does not verify certificates; the bench checks once, before measuring, that the name
is served with the test CA's certificate for it and that a request through it reaches the gateway.

Nothing is pinned to a CPU: wrk, Apache and nginx share the machine's cores, which the output
states. Not run in CI. Usage (as root, with the project's venv):

  .venv/bin/python bench/frontdoor.py [--install] [--duration 10] [--connections 16] [--rounds 3]

--install installs nginx-light and wrk with apt-get when missing (otherwise the bench says what to
install). The --whatif-* options alter Apache's configuration after the role ran, to measure a
change to the role before making it; their runs are labelled as such.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.frontdoor import client  # noqa: E402
from tests.frontdoor.apache_lock import LOCK, apache_lock  # noqa: E402
from tests.frontdoor.conftest import (  # noqa: E402
    APACHE_DIR,
    HTTPS_PORT,
    Runner,
    apache_pids,
    reset_host,
    stop_apache,
    wait_for,
)
from tests.frontdoor.pki import TestCA  # noqa: E402

ORG = "bench"
NAME = "bench.sfp.test"
PATH = "/rest/v1/items?select=*"
GOAL = 0.8
TICK = os.sysconf("SC_CLK_TCK")
PARTS = ("wrk", "apache", "nginx")
SBIN_PATH = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/local/sbin{os.pathsep}/usr/sbin{os.pathsep}/sbin"
# binary -> the Debian package that has it
TOOLS = {"nginx": "nginx-light", "wrk": "wrk"}
# A what-if file; named like the role's files so that reset_host removes it should a killed run
# leave it in a saved tree.
WHATIF_CONF = APACHE_DIR / "conf-enabled" / "sfp-frontdoor-zz-bench-whatif.conf"
SITE = APACHE_DIR / "sites-available" / f"sfp-frontdoor-{ORG}.conf"

# Three rows of a PostgREST answer: a few hundred bytes. No `$` or `'`: the text sits in a
# single-quoted nginx string, where `$` starts a variable.
BODY = json.dumps([{"id": i, "name": f"item {i}", "done": i % 2 == 0, "owner": "6f1c2a9e-3b7d-4c55-9e0a-2d8f4b1c7a3e",
                    "created_at": f"2025-01-0{i}T10:00:00.000000+00:00", "tags": ["bench", "frontdoor"]}
                   for i in range(1, 4)], separators=(",", ":"))

# Percentiles from wrk's own histogram, as one line the bench parses (wrk's text output rounds them).
WRK_REPORT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'SFP-BENCH {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, "max_us": %.0f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class Sample:
    side: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    # Seen by the gateway (nginx's stub_status): how many connections the requests came on.
    backend_requests: int | None
    backend_connections: int | None
    # CPU time per request (µs) of the client, Apache and the gateway; their sum against the
    # machine's cores says whether the run was CPU-bound, and the split where the time went.
    cpu_us: dict[str, float]


def which(binary: str) -> str | None:
    return shutil.which(binary, path=SBIN_PATH)


def ensure_tools(install: bool) -> None:
    missing = sorted({pkg for binary, pkg in TOOLS.items() if which(binary) is None})
    if which("apache2ctl") is None:
        sys.exit("apache2 is not installed; run `bash scripts/bootstrap` (it installs apache2)")
    if which("unshare") is None:
        sys.exit("unshare (util-linux) is needed to give wrk the org's name without editing /etc/hosts")
    if not missing:
        return
    if not install:
        sys.exit(f"missing: {', '.join(missing)}. Install them with `apt-get install -y {' '.join(missing)}` "
                 "or run the bench with --install")
    print(f"installing {' '.join(missing)} (apt-get)", flush=True)
    # nginx's package would start the system's nginx on port 80 where services may start
    # (systemd); a policy-rc.d that refuses every start keeps that from happening. One already
    # there (a container's) is left as it is.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# bench/frontdoor.py: no service starts while it installs packages\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def cpu_seconds(pids: list[int]) -> float:
    """User and system time so far of these processes (all their threads)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / TICK


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ExternalGateway:
    """A gateway the bench does not start (--gateway): an org's Kong on its bind address, on a host
    where the upstream images run. Neither its connections nor its CPU are counted."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.version = "the gateway at --gateway"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def pids(self) -> list[int]:
        return []

    def counters(self) -> tuple[int, int] | None:
        return None


class Gateway:
    """A private nginx on loopback answering BODY to every path, with stub_status for counting the
    connections the front door opens to it."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.binary = which("nginx") or "nginx"
        built = subprocess.run([self.binary, "-V"], capture_output=True, text=True, check=True).stderr
        self.version = built.splitlines()[0].split(":", 1)[-1].strip()
        self.has_status = "--with-http_stub_status_module" in built
        prefix.mkdir(parents=True)
        (prefix / "tmp").mkdir()
        # The package's compiled-in temporary directories are under /var/lib/nginx; every one
        # this build has goes to the private prefix instead.
        temp_paths = []
        for kind in re.findall(r"--http-([a-z-]+)-temp-path=", built):
            module = kind.replace("client-body", "").replace("-", "_")
            if module and f"--without-http_{module}_module" in built:
                continue
            directive = kind.replace("-", "_")
            temp_paths.append(f"    {directive}_temp_path {prefix}/tmp/{directive};")
        status = "        location = /nginx_status { stub_status; }\n" if self.has_status else ""
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(f"""\
daemon off;
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{chr(10).join(temp_paths)}
    server {{
        listen 127.0.0.1:{self.port};
{status}        location / {{
            default_type application/json;
            return 200 '{BODY}';
        }}
    }}
}}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        test = subprocess.run([self.binary, "-t", "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                               "-c", str(self.conf)], capture_output=True, text=True, check=False)
        if test.returncode != 0:
            sys.exit(f"the gateway stand-in's nginx config is refused:\n{test.stderr}")
        self.proc = subprocess.Popen([self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                                      "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.listening, what="the gateway stand-in (nginx)")

    def listening(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown, the workers go with the master
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pids(self) -> list[int]:
        """The master and its workers."""
        if self.proc is None:
            return []
        found = [self.proc.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    found.append(int(stat.parent.name))
        return found

    def counters(self) -> tuple[int, int] | None:
        """(connections accepted, requests) so far, not counting this query's own."""
        if not self.has_status:
            return None
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /nginx_status HTTP/1.0\r\nHost: status\r\n\r\n")
            raw = b""
            while chunk := s.recv(4096):
                raw += chunk
        match = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n", raw)
        if match is None:
            return None
        return int(match[1]) - 1, int(match[3]) - 1


def wrk(url: str, args: argparse.Namespace, script: Path, hosts: Path | None) -> dict[str, float]:
    cmd = [which("wrk") or "wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
           "--timeout", "5s", "-s", str(script), *(arg for h in args.header for arg in ("-H", h)), url]
    if hosts is not None:
        # Only wrk's namespace sees this /etc/hosts (unshare makes its mounts private).
        cmd = [which("unshare") or "unshare", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
               str(hosts), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=args.duration + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("SFP-BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    report: dict[str, float] = json.loads(line.removeprefix("SFP-BENCH "))
    return report


def measure(side: str, url: str, args: argparse.Namespace, script: Path, hosts: Path | None,
            gateway: Gateway | ExternalGateway) -> Sample:
    before = gateway.counters()
    # Apache's children are looked up once: with MaxConnectionsPerChild 0 none is replaced during a run.
    apache, nginx = apache_pids(), gateway.pids()
    cpu_before = (children_cpu_seconds(), cpu_seconds(apache), cpu_seconds(nginx))
    got = wrk(url, args, script, hosts)
    cpu_after = (children_cpu_seconds(), cpu_seconds(apache), cpu_seconds(nginx))
    after = gateway.counters()
    errors = int(sum(got[k] for k in ("connect", "read", "write", "status", "timeout")))
    conns = reqs = None
    if before is not None and after is not None:
        # The query for `after` is not counted in it; the one for `before` is, once each.
        conns, reqs = after[0] - before[0] - 1, after[1] - before[1] - 1
    cpu = {part: (b - a) / got["requests"] * 1e6 for part, a, b in zip(PARTS, cpu_before, cpu_after, strict=True)}
    return Sample(side, got["requests"] / got["duration_us"] * 1e6, got["p50_us"] / 1000, got["p99_us"] / 1000, errors,
                  reqs, conns, cpu)


def wait_for_lock() -> None:
    """Say why nothing happens while a pytest run holds the Apache (apache_lock itself waits silently)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for the machine's Apache ({LOCK} is held: a test run is using it) ...", flush=True)
        else:
            fcntl.flock(probe, fcntl.LOCK_UN)


def apply_whatifs(args: argparse.Namespace) -> list[str]:
    """The --whatif-* changes to the configuration the role wrote; what was changed, for the output."""
    changes: list[str] = []
    for verb, modules in (("dismod", args.whatif_disable_module), ("enmod", args.whatif_enable_module)):
        for module in modules:
            done = subprocess.run([f"a2{verb}", "-q", "-f", module], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"a2{verb} {module} failed: {done.stdout}{done.stderr}")
            changes.append(f"a2{verb} {module}")
    if args.whatif_server:
        WHATIF_CONF.write_text("".join(f"{line}\n" for line in args.whatif_server))
        changes += [f"server: {line}" for line in args.whatif_server]
    if args.whatif_vhost or args.whatif_drop:
        text = SITE.read_text()
        for pattern in args.whatif_drop:
            kept = [ln for ln in text.splitlines(keepends=True) if not re.search(pattern, ln)]
            if len(kept) == len(text.splitlines()):
                raise SystemExit(f"--whatif-drop {pattern!r} matches no line of {SITE}")
            changes.append(f"dropped from the org's site: {pattern}")
            text = "".join(kept)
        if args.whatif_vhost:
            # The TLS virtual host is the file's last one.
            head, sep, tail = text.rpartition("</VirtualHost>")
            text = head + "".join(f"    {line}\n" for line in args.whatif_vhost) + sep + tail
            changes += [f"TLS vhost: {line}" for line in args.whatif_vhost]
        SITE.write_text(text)
    if changes:
        test = subprocess.run(["apache2ctl", "configtest"], capture_output=True, text=True, check=False)
        if test.returncode != 0:
            raise SystemExit(f"the what-if configuration is refused by apache2ctl configtest:\n{test.stderr}")
        # Stopped and started: a restart (SIGHUP) keeps the loaded MPM, and not every MPM setting
        # is taken over by one.
        stop_apache()
        subprocess.run(["apache2ctl", "start"], capture_output=True, check=True)
    return changes


@contextlib.contextmanager
def front_door(work: Path, upstream: str, args: argparse.Namespace) -> Iterator[list[str]]:
    """The role applied for one org, Apache serving it; afterwards the machine's Apache as it was
    (the session fixture frontdoor_host of tests/frontdoor does the same)."""
    snapshot = work / "etc-apache2.tar"
    with tarfile.open(snapshot, "w") as tar:
        tar.add(APACHE_DIR, arcname="apache2")
    try:
        reset_host(snapshot)
        ca = TestCA()
        leaf = ca.issue(NAME)
        ca_file = ca.write(work / "ca.pem")
        print(f"applying roles/frontdoor (ansible-playbook) for {NAME} -> {upstream} ...", flush=True)
        started = time.monotonic()
        run = Runner(work / "role")({ORG: {
            "frontdoor__hostname": NAME, "frontdoor__upstream": upstream,
            "frontdoor__certificate": {"source": "provided", "cert": leaf.chain_pem, "key": leaf.key_pem}}})
        if run.rc != 0:
            raise SystemExit(f"the role failed:\n{run.stdout[-5000:]}\n{run.stderr[-2000:]}")
        print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
        changes = apply_whatifs(args)
        wait_for(lambda: client.peer_cert(NAME, HTTPS_PORT).serial_number == leaf.serial, what=f"{NAME} served")
        # Verified against the test CA, by name: wrk itself checks no certificate.
        headers = {name.strip(): value.strip() for name, value in (h.split(":", 1) for h in args.header)}
        got = client.request(NAME, HTTPS_PORT, args.path, ca=ca_file, headers=headers)
        # The front door must answer what the gateway answers directly (a refusal measured on both
        # sides would be a bench of the gateway's 401).
        direct = http.client.HTTPConnection(urlsplit(upstream).hostname or "127.0.0.1", urlsplit(upstream).port or 80, timeout=10)
        try:
            direct.request("GET", args.path, headers=headers)
            answer = direct.getresponse()
            expected = (answer.status, answer.read())
        finally:
            direct.close()
        if expected[0] != 200 or (got.status, got.body) != expected:
            raise SystemExit(f"the gateway answers {expected[0]} directly and {got.status} through the front door: "
                             f"{got.body[:200]!r}; give --path and --header so that both answer 200")
        yield changes
    finally:
        # A second Ctrl-C must not cut the restore short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            reset_host(snapshot)
        finally:
            signal.signal(signal.SIGINT, previous)


def apache_setup() -> list[str]:
    """What the reader needs to know of the Apache measured: version, MPM and its limits, keep-alive."""
    v = subprocess.run(["apache2ctl", "-V"], capture_output=True, text=True, check=False).stdout
    version = re.search(r"Server version:\s*(.+)", v)
    mpm = re.search(r"Server MPM:\s*(\S+)", v)
    lines = [f"Apache: {version[1] if version else '?'}, MPM {mpm[1] if mpm else '?'} (apache2ctl -V)"]
    for conf in sorted((APACHE_DIR / "mods-enabled").glob("mpm_*.conf")):
        settings = [" ".join(ln.split()) for ln in conf.read_text().splitlines()
                    if ln.strip() and not ln.lstrip().startswith("#") and not ln.lstrip().startswith("<")]
        lines.append(f"  {conf.name}: {', '.join(settings)}")
    for conf in (APACHE_DIR / "apache2.conf", APACHE_DIR / "conf-enabled" / "sfp-frontdoor.conf"):
        keep = [" ".join(ln.split()) for ln in conf.read_text().splitlines()
                if re.match(r"\s*(KeepAlive|MaxKeepAliveRequests|KeepAliveTimeout)\b", ln)]
        lines.append(f"  {conf.name}: {', '.join(keep) or '(no keep-alive setting)'}")
    # This machine's tree may have more than the role needs (an SSO gate's module a test enabled).
    mods = sorted(p.name.removesuffix(".load") for p in (APACHE_DIR / "mods-enabled").glob("*.load"))
    lines.append(f"  modules enabled: {' '.join(mods)}")
    if WHATIF_CONF.exists():
        lines.append(f"  what-if server config: {', '.join(WHATIF_CONF.read_text().splitlines())}")
    return lines


def row(label: str, s: Sample) -> str:
    per_conn = f"{s.backend_requests / s.backend_connections:>9.0f}" if s.backend_requests and s.backend_connections else f"{'n/a':>9}"
    conns = f"{s.backend_connections:>6}" if s.backend_connections is not None else f"{'n/a':>6}"
    cpu = " ".join(f"{s.cpu_us[part]:>6.1f}" for part in PARTS)
    busy = sum(s.cpu_us.values()) * s.rps / 1e6
    return f"{label:<22} {s.rps:>9.0f} {s.p50_ms:>8.2f} {s.p99_ms:>8.2f} {conns} {per_conn} {s.errors:>6}  {cpu} {busy:>5.2f}"


def median(side: str, samples: list[Sample]) -> Sample:
    mine = [s for s in samples if s.side == side]
    conns = [s.backend_connections for s in mine if s.backend_connections is not None]
    reqs = [s.backend_requests for s in mine if s.backend_requests is not None]
    return Sample(side, statistics.median(s.rps for s in mine), statistics.median(s.p50_ms for s in mine),
                  statistics.median(s.p99_ms for s in mine), sum(s.errors for s in mine),
                  int(statistics.median(reqs)) if reqs else None, int(statistics.median(conns)) if conns else None,
                  {part: statistics.median(s.cpu_us[part] for s in mine) for part in PARTS})


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds through the finally blocks that restore Apache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections wrk holds (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, alternately (default 3)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of an unrecorded run of each side first")
    parser.add_argument("--install", action="store_true", help="apt-get install nginx-light and wrk when missing")
    parser.add_argument("--gateway", metavar="URL",
                        help="measure against this gateway instead of the nginx stand-in (e.g. an org's Kong, "
                             "http://127.0.0.1:8000, on a host that runs the upstream images)")
    parser.add_argument("--path", default=PATH, help=f"the path requested on both sides (default {PATH})")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a request header on both sides (repeatable), e.g. the org's apikey for --gateway")
    parser.add_argument("--whatif-disable-module", action="append", default=[], metavar="MODULE",
                        help="a2dismod this module after the role ran (repeatable), e.g. mpm_event")
    parser.add_argument("--whatif-enable-module", action="append", default=[], metavar="MODULE",
                        help="a2enmod this module after the role ran (repeatable), e.g. mpm_worker")
    parser.add_argument("--whatif-server", action="append", default=[], metavar="DIRECTIVE",
                        help="a server-wide Apache directive added after the role ran (repeatable)")
    parser.add_argument("--whatif-vhost", action="append", default=[], metavar="DIRECTIVE",
                        help="a directive added to the org's TLS virtual host (repeatable)")
    parser.add_argument("--whatif-drop", action="append", default=[], metavar="REGEX",
                        help="drop the lines of the org's site file that match (repeatable)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the bench applies the role to this machine's Apache")
    signal.signal(signal.SIGTERM, on_sigterm)
    ensure_tools(args.install)

    with tempfile.TemporaryDirectory(prefix="sfp-bench-frontdoor-") as tmp:
        work = Path(tmp)
        script = work / "report.lua"
        script.write_text(WRK_REPORT)
        hosts = work / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {NAME}\n")
        wrk_version = subprocess.run([which("wrk") or "wrk", "-v"], capture_output=True, text=True, check=False)
        gateway = ExternalGateway(args.gateway) if args.gateway else Gateway(work / "nginx")
        wait_for_lock()
        with apache_lock():
            gateway.start()
            try:
                with front_door(work, gateway.url, args) as changes:
                    sides = {"direct": (gateway.url + args.path, None),
                             "front door": (f"https://{NAME}:{HTTPS_PORT}{args.path}", hosts)}
                    print()
                    for line in apache_setup():
                        print(line)
                    if isinstance(gateway, Gateway):
                        print(f"gateway stand-in: {gateway.version} on {gateway.url}, {len(gateway.pids()) - 1} workers, "
                              f"access log off, {len(BODY)}-byte JSON answer")
                    else:
                        print(f"gateway: {gateway.url} (--gateway; its CPU and connections are not counted)")
                    print(f"client: {(wrk_version.stdout + wrk_version.stderr).split()[1]}, {args.threads} threads, "
                          f"{args.connections} keep-alive connections, HTTP/1.1, {args.duration} s per run, "
                          f"{args.rounds} rounds per side alternately, GET {args.path}")
                    print(f"front door: TLS (SNI {NAME}) on 127.0.0.1:{HTTPS_PORT}, certificate of the test CA "
                          f"(source provided), proxied to {gateway.url}")
                    print(f"machine: {os.cpu_count()} CPUs shared by wrk, Apache and nginx (nothing pinned), "
                          f"load average {os.getloadavg()[0]:.2f} before the runs")
                    if changes:
                        print("WHAT-IF: not the role as it is; after the role ran, this was changed:")
                        for change in changes:
                            print(f"  {change}")
                    if args.warmup > 0:
                        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
                        for url, name_hosts in sides.values():
                            wrk(url, warm, script, name_hosts)
                    samples: list[Sample] = []
                    print(f"\n{'':<62}  {'CPU µs per request':^20} {'CPUs'}")
                    print(f"{'run':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'bconns':>6} {'req/bconn':>9} {'errors':>6}  "
                          f"{'wrk':>6} {'apache':>6} {'nginx':>6} {'busy':>5}")
                    for n in range(1, args.rounds + 1):
                        # Flipped every round, so neither side always runs on a warmer (or busier) machine.
                        order = list(sides) if n % 2 else list(reversed(sides))
                        for side in order:
                            url, name_hosts = sides[side]
                            samples.append(measure(side, url, args, script, name_hosts, gateway))
                            print(row(f"{n} {side}", samples[-1]), flush=True)
                    direct, door = median("direct", samples), median("front door", samples)
                    print(row("median direct", direct))
                    print(row("median front door", door))
                    print("(bconns: connections the gateway accepted during the run; req/bconn: requests per such "
                          "connection;\n errors: wrk's socket errors, timeouts and non-2xx answers, summed; CPU µs per "
                          "request: user+system time\n of wrk, of Apache's processes, of nginx's; busy: CPUs those three "
                          f"kept busy on average, of {os.cpu_count()})")
                    ratio = door.rps / direct.rps
                    verdict = "MET" if ratio >= GOAL else "NOT MET"
                    print(f"\nrequests per second, front door / direct: {door.rps:.0f} / {direct.rps:.0f} = "
                          f"{ratio:.2f}   goal >= {GOAL}: {verdict}")
                    print(f"p99 latency added by the front door: {door.p99_ms - direct.p99_ms:+.2f} ms "
                          f"({door.p99_ms:.2f} ms against {direct.p99_ms:.2f} ms; p50 {door.p50_ms - direct.p50_ms:+.2f} ms)")
                    if direct.errors or door.errors:
                        print(f"WARNING: wrk counted errors (direct {direct.errors}, front door {door.errors}); "
                              "the figures include failed requests")
                    if changes:
                        print("WHAT-IF run: the figures are not the role's as it is.")
            finally:
                gateway.stop()
    print("Apache put back as it was (stopped, /etc/apache2 restored, the role's files removed)")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # The finally blocks have run by now: no traceback, just the state the machine is in.
        sys.exit("interrupted; the bench's nginx is stopped and Apache is as it was")
