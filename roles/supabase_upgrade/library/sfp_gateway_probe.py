#!/usr/bin/python
"""Smoke checks through an org's gateway: plain requests and a websocket upgrade, retried until a deadline."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sfp_gateway_probe
short_description: Requests through an org's API gateway, as clients make them, until each answers as expected
description:
  - Each check is retried until it answers with an expected status or the timeout passes; the
    module never fails on a check (the role decides), only on bad arguments.
  - A websocket check sends an HTTP/1.1 upgrade handshake and expects 101 Switching Protocols,
    the step a Realtime client takes first.
options:
  url: {description: Base URL of the gateway (http://host:port), type: str, required: true}
  api_key: {description: Key sent as the apikey header (and query parameter for websockets), type: str, default: "", no_log: true}
  checks:
    description: List of {name, path, expect (list of status codes), websocket (bool)}.
    type: list
    elements: dict
    required: true
  timeout: {description: Seconds each check may take to pass, type: int, default: 120}
attributes:
  check_mode: {support: full}
"""

RETURN = r"""
results: {description: "Per check: name, ok, status, seconds, detail", type: list, returned: always}
failed_checks: {description: The results of the checks that did not pass, type: list, returned: always}
"""

import base64
import http.client
import os
import time
import urllib.parse

from ansible.module_utils.basic import AnsibleModule


def _once(base: urllib.parse.SplitResult, check: dict, key: str) -> int:
    path = str(check["path"])
    headers = {"apikey": key} if key else {}
    if check.get("websocket"):
        sep = "&" if "?" in path else "?"
        path = f"{path}{sep}apikey={urllib.parse.quote(key)}" if key else path
        headers.update({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    conn_type = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(base.hostname, base.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        # A 101 carries no body to read: the connection now speaks websocket; it is closed here.
        return resp.status
    finally:
        conn.close()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "checks": {"type": "list", "elements": "dict", "required": True},
            "timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    base = urllib.parse.urlsplit(module.params["url"])
    if base.scheme not in ("http", "https") or not base.hostname:
        module.fail_json(msg=f"url {module.params['url']!r} is not http(s)://host[:port]")
    results = []
    for check in module.params["checks"]:
        expect = [int(c) for c in check.get("expect") or [200]]
        start = time.monotonic()
        status, detail = 0, ""
        while True:
            try:
                status = _once(base, check, module.params["api_key"])
                detail = f"HTTP {status}"
            except (OSError, http.client.HTTPException) as exc:
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            if status in expect or time.monotonic() - start > module.params["timeout"]:
                break
            time.sleep(1)
        ok = status in expect
        if not ok:
            detail = f"{check['name']}: {check['path'].split('?')[0]} answered {detail}, expected {', '.join(map(str, expect))}"
        results.append({"name": check["name"], "ok": ok, "status": status,
                        "seconds": round(time.monotonic() - start, 2), "detail": detail})
    module.exit_json(changed=False, results=results, failed_checks=[r for r in results if not r["ok"]])


if __name__ == "__main__":
    main()
