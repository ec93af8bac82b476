"""Runs inside a stand-in container (`python3 -c "$(cat emitter.py)"`): prints N log lines in the
format of service EMIT, in imitation of the upstream formats, then sleeps (or exits with EXIT=1).

Environment: EMIT (auth|kong|rest|storage|realtime|plain), N, ORG, GAP (seconds between lines),
SECRET (a value the org's masking must hide), EXIT.
"""

import json
import os
import sys
import time
from datetime import UTC, datetime

svc = os.environ.get("EMIT", "plain")
n = int(os.environ.get("N", "20"))
org = os.environ.get("ORG", "org")
gap = float(os.environ.get("GAP", "0.01"))
secret = os.environ.get("SECRET", "")
out = sys.stdout


def line_for(i, t):
    status = (200, 404, 503)[i % 3]
    if svc == "auth":
        level = ("info", "warning", "error")[i % 3]
        return json.dumps({"component": "api", "level": level, "method": "POST", "msg": f"{org} auth line {i}",
                           "path": "/token", "status": status, "request_id": f"req-{i}",
                           "time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "header": f"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJpIjoi{i}In0.sig{i}x",
                           "note": f"uses {secret}" if secret else ""}, separators=(",", ":"))
    if svc == "kong":
        return (f'172.18.0.1 - - [{t:%d/%b/%Y:%H:%M:%S} +0000] "GET /rest/v1/items?id=eq.{i}&apikey=key{i}value '
                f'HTTP/1.1" {status} 12 "-" "curl/8.5.0" kong_request_id: "{i:032x}"')
    if svc == "rest":
        return f"{t:%d/%b/%Y:%H:%M:%S} +0000: {org} rest line {i}"
    if svc == "storage":
        return json.dumps({"level": (30, 40, 50)[i % 3], "time": int(t.timestamp() * 1000), "reqId": f"req-{i}",
                           "msg": f"{org} storage line {i}"})
    if svc == "realtime":
        return f"{t:%H:%M:%S}.{t.microsecond // 1000:03d} [{('info', 'warning', 'error')[i % 3]}] {org} realtime line {i}"
    return f"{org} plain line {i}"


for i in range(n):
    t = datetime.now(UTC)
    out.write(line_for(i, t) + "\n")
    out.flush()
    if i == 3 and os.environ.get("BINARY"):
        out.buffer.write(b"\xff\xfe binary \x00\x01 line \xc3\x28 end\n")
        out.flush()
    if gap:
        time.sleep(gap)
out.flush()
if os.environ.get("EXIT"):
    sys.exit(0)
while True:
    time.sleep(3600)
