"""Benchmark of `logs --json` on a busy org (not run in CI).

Starts an org of 4 containers (sfp-test/standin:1 running a generator) that print N log lines in
total, in the auth (logrus JSON), kong (access log), storage (pino JSON) and db (PostgreSQL stderr,
with multi-line statements) formats, then exit. Then times, for the last hour:

  ours:     sfp-server -i INV logs --org ORG --since 1h --json > /dev/null  (INV: a one-org inventory)
            (discover, `docker logs` per container, parse, merge by time, mask, JSON)
  baseline: docker logs --timestamps --since 1h C  for each container, one after the other, > /dev/null

and prints the ratio ours/baseline (goal <= 2.0) and the peak RSS of our Python process, for two sizes
(the RSS should stay flat: everything is streamed). Usage:

  .venv/bin/python bench/logs.py [--sizes 1000000,2000000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
IMAGE = "sfp-test/standin:1"
SERVICES = ("auth", "kong", "storage", "db")

GENERATOR = r'''
import json, os, sys, time, random
from datetime import datetime, timezone
svc = os.environ["SVC"]; n = int(os.environ["N"]); org = os.environ["ORG"]
out = sys.stderr if svc == "db" else sys.stdout
w = out.write
buf = []
rnd = random.Random(7)
t = datetime.now(timezone.utc)
stamp_iso = t.strftime("%Y-%m-%dT%H:%M:%SZ")
stamp_clf = t.strftime("%d/%b/%Y:%H:%M:%S +0000")
stamp_pg = t.strftime("%Y-%m-%d %H:%M:%S.123 UTC")
ms = int(t.timestamp() * 1000)
i = 0
while i < n:
    r = rnd.random()
    if svc == "auth":
        line = json.dumps({"component": "api", "duration": 1234567 + i, "level": "info" if r < .9 else "error",
            "method": "POST", "msg": "request completed", "path": "/token", "referer": "http://localhost:3000",
            "remote_addr": "172.18.0.1", "request_id": "%032x" % i, "status": 200 if r < .9 else 500,
            "time": stamp_iso})
    elif svc == "kong":
        line = ('172.18.0.1 - - [%s] "GET /rest/v1/todos?select=*&id=eq.%d HTTP/1.1" %d 512 "-" '
                '"supabase-js/2.45.0" kong_request_id: "%032x"' % (stamp_clf, i, 200 if r < .95 else 404, i))
    elif svc == "storage":
        line = json.dumps({"level": 30 if r < .95 else 40, "time": ms, "pid": 1, "hostname": "c0ffee",
            "reqId": "req-%d" % i, "tenantId": "stub", "type": "request",
            "req": {"method": "GET", "url": "/object/public/avatars/%d.png" % i}, "res": {"statusCode": 200},
            "responseTime": 3.2, "msg": "stub | GET | 200 | 172.18.0.9 | req-%d | /object | node" % i})
    else:
        if r < .9:
            line = "%s [%d] authenticator@postgres LOG:  duration: 0.%03d ms  statement: select * from todos where id = %d" % (stamp_pg, 100 + i % 50, i % 1000, i)
        else:
            line = ("%s [%d] authenticator@postgres ERROR:  relation \"nope\" does not exist at character 15\n"
                    "%s [%d] authenticator@postgres STATEMENT:  select *\n\t  from nope\n\t  where id = %d"
                    % (stamp_pg, 100 + i % 50, stamp_pg, 100 + i % 50, i))
            i += 3
    buf.append(line)
    i += 1
    if len(buf) >= 2000:
        w("\n".join(buf) + "\n"); out.flush(); buf = []
if buf:
    w("\n".join(buf) + "\n"); out.flush()
'''


def docker(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload]


def start_org(org: str, total: int) -> list[str]:
    names = []
    per = total // len(SERVICES)
    for svc in SERVICES:
        name = f"sfp-{org}-{svc}"
        docker("run", "-d", "--name", name, "--log-driver", "json-file",
               "--label", f"org.sfp.org={org}", "--label", f"org.sfp.service={svc}",
               "--label", f"com.docker.compose.project=sfp-{org}", "--label", f"com.docker.compose.service={svc}",
               "-e", f"SVC={svc}", "-e", f"N={per}", "-e", f"ORG={org}",
               "--entrypoint", "python3", IMAGE, "-c", GENERATOR)
        names.append(name)
    for name in names:
        docker("wait", name, timeout=1800)
    return names


def peak_rss_kib(pid: int, stop: threading.Event, result: list[int]) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    result[0] = max(result[0], int(line.split()[1]))
        except OSError:
            return
        time.sleep(0.02)


def inventory(org: str, where: Path) -> Path:
    """A one-org inventory on this machine: what `sfp-server logs` needs to find the org's engine."""
    hosts = {"all": {"children": {"sfp_orgs": {"children": {"machine_local": {
        "vars": {"ansible_connection": "local"}, "hosts": {org: None}}}}}}}
    (where / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return where


def time_ours(org: str) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        return _time_ours(org, inventory(org, Path(tmp)))


def _time_ours(org: str, inv: Path) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "installer.cli", "-i", str(inv), "logs", "--org", org, "--since", "1h",
                             "--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rss = [0]
    stop = threading.Event()
    th = threading.Thread(target=peak_rss_kib, args=(proc.pid, stop, rss), daemon=True)
    th.start()
    assert proc.stdout is not None
    lines = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
    rc = proc.wait()
    elapsed = time.perf_counter() - t0
    stop.set()
    th.join()
    if rc != 0:
        raise SystemExit(f"logs failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, rss[0], lines


def time_baseline(names: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    lines = 0
    for name in names:
        proc = subprocess.Popen(["docker", "logs", "--timestamps", "--since", "1h", name], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read(1 << 20)
            if not chunk:
                break
            lines += chunk.count(b"\n")
        proc.wait()
    return time.perf_counter() - t0, lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,2000000")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="leave the containers (for --reuse)")
    ap.add_argument("--reuse", help="time an org left by --keep instead of generating one")
    a = ap.parse_args()
    print(f"{'lines':>9} {'events':>9} {'ours s':>8} {'docker s':>8} {'ratio':>6} {'peak RSS MiB':>12}")
    for size in (int(s) for s in a.sizes.split(",")):
        org = a.reuse or "bench" + secrets.token_hex(3)
        names: list[str] = []
        try:
            t0 = time.perf_counter()
            if a.reuse:
                names = docker("ps", "-a", "--filter", f"label=org.sfp.org={org}", "--format", "{{.Names}}").stdout.split()
            else:
                names = start_org(org, size)
            gen = time.perf_counter() - t0
            best_ours, best_base, rss, events, raw = 1e9, 1e9, 0, 0, 0
            for _ in range(a.runs):
                base, raw = time_baseline(names)
                ours, r, events = time_ours(org)
                best_ours, best_base, rss = min(best_ours, ours), min(best_base, base), max(rss, r)
            load = os.getloadavg()[0]
            print(f"{raw:>9} {events:>9} {best_ours:>8.2f} {best_base:>8.2f} {best_ours / best_base:>6.2f} "
                  f"{rss / 1024:>12.1f}   (generated in {gen:.0f}s, best of {a.runs}, load avg {load:.1f})",
                  flush=True)
        finally:
            if names and not a.keep:
                subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=False)
    print(f"cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
