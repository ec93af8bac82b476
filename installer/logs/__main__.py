"""A minimal command line over the API, for tests, benchmarks and debugging until `sfp-server logs`
is wired: `python -m installer.logs --org ORG [--service a,b] [--since ..] [--until ..] [--level ..]
[--grep ..] [--tail N] [--follow] [--json] [--host ssh://user@host --identity KEY --known-hosts FILE]`."""

from __future__ import annotations

import argparse
import signal
import sys

from installer.errors import SfpError

from .api import LogQuery, run_logs
from .source import DockerEndpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m installer.logs")
    p.add_argument("--org", required=True)
    p.add_argument("--service")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--level")
    p.add_argument("--grep")
    p.add_argument("--tail", type=int)
    p.add_argument("--follow", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--host")
    p.add_argument("--identity")
    p.add_argument("--known-hosts")
    p.add_argument("--secret", action="append", default=[])
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        endpoint = DockerEndpoint(a.host, identity_file=a.identity, known_hosts_file=a.known_hosts)
        query = LogQuery(org=a.org, services=a.service.split(",") if a.service else None, since=a.since,
                         until=a.until, level=a.level, grep=a.grep, tail=a.tail)
        return run_logs(query, endpoint=endpoint, secrets=a.secret, json_output=a.json, follow=a.follow)
    except SfpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
