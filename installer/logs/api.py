"""`sfp-server logs`: merge an org's container logs by time, filter, mask, and print them."""

from __future__ import annotations

import contextlib
import heapq
import queue
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import IO

from rich.console import Console
from rich.text import Text

from installer.errors import SfpError

from .event import LEVEL_RANK, LEVELS, LogEvent
from .masking import Masker
from .parsers import EventBuilder
from .source import Container, DockerEndpoint
from .timespec import parse_time_spec


@dataclass
class LogQuery:
    """What to read: one org, optionally some services, a time window, a level threshold, a regex
    on the message and the last N events of the merged result."""

    org: str
    services: Sequence[str] | None = None
    since: str | datetime | None = None
    until: str | datetime | None = None
    level: str | None = None
    grep: str | None = None
    tail: int | None = None


@dataclass
class _Plan:
    since_ns: int | None
    until_ns: int | None
    min_rank: int
    pattern: re.Pattern[str] | None
    tail: int | None


def _plan(query: LogQuery, now: datetime | None, tz: tzinfo | None) -> _Plan:
    since_ns = parse_time_spec(query.since, now=now, tz=tz) if query.since is not None else None
    until_ns = parse_time_spec(query.until, now=now, tz=tz) if query.until is not None else None
    if since_ns is not None and until_ns is not None and until_ns < since_ns:
        raise SfpError("--until is before --since", "swap the two times")
    rank = 0
    if query.level is not None:
        level = {"warning": "warn", "err": "error"}.get(query.level.lower(), query.level.lower())
        if level not in LEVEL_RANK:
            raise SfpError(f"unknown level {query.level!r}", f"choose one of: {', '.join(LEVELS)}")
        rank = LEVEL_RANK[level]
    pattern = None
    if query.grep:
        try:
            pattern = re.compile(query.grep)
        except re.error as exc:
            raise SfpError(f"--grep is not a valid regular expression: {exc}",
                           "quote it for your shell and escape ( [ . * + ? as \\( \\[ ...") from None
    if query.tail is not None and query.tail < 0:
        raise SfpError("--tail must be 0 or more", "give the number of last events to show")
    return _Plan(since_ns, until_ns, rank, pattern, query.tail)


def _container_events(endpoint: DockerEndpoint, c: Container, *, since_ns: int | None,
                      until_ns: int | None, tail: int | None, last_seen: dict[str, int] | None = None,
                      ) -> Generator[LogEvent, None, None]:
    builder = EventBuilder(c.service, org=c.org, host=endpoint.host, container=c.name)
    feed = builder.feed
    last = 0
    try:
        for item in endpoint.raw_lines(c.id, since_ns=since_ns, until_ns=until_ns, tail=tail):
            if item is None:
                continue
            ns, text = item
            last = ns
            ev = feed(ns, text)
            if ev is not None:
                yield ev
        ev = builder.flush()
        if ev is not None:
            yield ev
    finally:
        if last_seen is not None and last:
            last_seen[c.id] = last


def _select(events: Iterable[LogEvent], plan: _Plan, masker: Masker) -> Iterator[LogEvent]:
    since_ns, until_ns, min_rank, pattern = plan.since_ns, plan.until_ns, plan.min_rank, plan.pattern
    rank = LEVEL_RANK
    mask = masker.event
    for ev in events:
        t = ev.time_ns
        if (since_ns is not None and t < since_ns) or (until_ns is not None and t > until_ns):
            continue
        if min_rank and rank[ev.level] < min_rank:
            continue
        mask(ev)
        if pattern is not None and pattern.search(ev.message) is None:
            continue
        yield ev


def _by_time(ev: LogEvent) -> int:
    return ev.time_ns


def read_events(query: LogQuery, *, endpoint: DockerEndpoint | None = None, secrets: Iterable[str] = (),
                now: datetime | None = None, tz: tzinfo | None = None) -> Iterator[LogEvent]:
    """The org's events in time order, filtered and masked, streamed (memory bounded by the number of
    containers, plus N events for `tail`). Raises SfpError for an unknown org/service or an unreachable host."""
    endpoint = endpoint or DockerEndpoint()
    plan = _plan(query, now, tz)
    masker = Masker(secrets)
    containers = endpoint.containers_for(query.org, query.services)
    return _read(endpoint, containers, plan, masker, None)


def _read(endpoint: DockerEndpoint, containers: Sequence[Container], plan: _Plan, masker: Masker,
          last_seen: dict[str, int] | None) -> Iterator[LogEvent]:
    # Docker applies --tail before --since/--until; "last N lines, then since" is still the last N
    # since then, but with --until, --level or --grep the last N lines may not hold N matches, so
    # then every line of the window is read and only N events are kept.
    docker_tail = None
    if plan.tail is not None and plan.until_ns is None and not plan.min_rank and plan.pattern is None:
        docker_tail = plan.tail + max(50, plan.tail)  # margin for multi-line entries
    streams = [_container_events(endpoint, c, since_ns=plan.since_ns, until_ns=plan.until_ns,
                                 tail=docker_tail, last_seen=last_seen) for c in containers]
    merged: Iterable[LogEvent] = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_by_time)
    selected = _select(merged, plan, masker)
    if plan.tail is None:
        yield from selected
        return
    if plan.tail == 0:
        for s in streams:
            s.close()
        return
    yield from deque(selected, maxlen=plan.tail)


def follow_events(query: LogQuery, *, endpoint: DockerEndpoint | None = None, secrets: Iterable[str] = (),
                  now: datetime | None = None, tz: tzinfo | None = None, poll_interval: float = 1.0,
                  stop: threading.Event | None = None) -> Iterator[LogEvent]:
    """Like read_events, then keeps printing new lines as they come, across container restarts and
    re-creations (the org's containers are looked up again every `poll_interval` seconds and any
    running one not being read is attached, from where it was left). Ends when `stop` is set or the
    consumer stops iterating (KeyboardInterrupt included); every child process is ended then."""
    endpoint = endpoint or DockerEndpoint()
    if query.until is not None:
        raise SfpError("--follow and --until do not go together", "leave out --until to follow, or --follow to read a window")
    plan = _plan(query, now, tz)
    masker = Masker(secrets)
    stop = stop or threading.Event()
    containers = endpoint.containers_for(query.org, query.services)
    services = {c.service for c in containers} if query.services else None
    last_seen: dict[str, int] = {}
    start_ns = time.time_ns()
    yield from _read(endpoint, containers, plan, masker, last_seen)

    live_plan = _Plan(None, None, plan.min_rank, plan.pattern, None)
    q: queue.Queue[LogEvent] = queue.Queue(maxsize=10_000)
    readers: dict[str, threading.Thread] = {}

    def reader(c: Container, since_ns: int) -> None:
        builder = EventBuilder(c.service, org=c.org, host=endpoint.host, container=c.name)
        try:
            lines = endpoint.raw_lines(c.id, since_ns=since_ns, follow=True, idle=0.3)
            for item in lines:
                if stop.is_set():
                    lines.close()
                    break
                if item is None:
                    ev = builder.flush()
                else:
                    ns, text = item
                    if ns <= last_seen.get(c.id, since_ns - 1):
                        continue
                    last_seen[c.id] = ns
                    ev = builder.feed(ns, text)
                if ev is not None:
                    for out in _select((ev,), live_plan, masker):
                        while not stop.is_set():
                            try:
                                q.put(out, timeout=0.2)
                                break
                            except queue.Full:
                                continue
            ev = builder.flush()
            if ev is not None and not stop.is_set():
                for out in _select((ev,), live_plan, masker):
                    q.put(out)
        except SfpError:
            pass  # container gone or host hiccup: the next look-up attaches again

    def attach() -> None:
        try:
            current = endpoint.list_containers(query.org)
        except SfpError:
            return
        for c in current:
            if services is not None and c.service not in services:
                continue
            t = readers.get(c.id)
            if c.running and (t is None or not t.is_alive()):
                since = last_seen.get(c.id, start_ns)
                th = threading.Thread(target=reader, args=(c, since), daemon=True, name=f"follow-{c.name}")
                readers[c.id] = th
                th.start()

    try:
        attach()
        next_look = time.monotonic() + poll_interval
        while not stop.is_set():
            try:
                yield q.get(timeout=min(0.2, poll_interval))
                continue
            except queue.Empty:
                pass
            if time.monotonic() >= next_look:
                attach()
                next_look = time.monotonic() + poll_interval
    finally:
        stop.set()
        for th in readers.values():
            th.join(timeout=3)


# ---------------------------------------------------------------- output

SERVICE_COLOURS: dict[str, str] = {
    "studio": "bright_magenta", "kong": "cyan", "auth": "green", "rest": "blue", "realtime": "magenta",
    "storage": "yellow", "imgproxy": "bright_yellow", "meta": "bright_blue", "functions": "bright_cyan",
    "analytics": "bright_green", "vector": "bright_black", "db": "bright_white", "supavisor": "bright_red",
}
LEVEL_STYLES = {"debug": "dim", "info": "", "warn": "yellow", "error": "bold red", "fatal": "bold white on red"}


def format_line(ev: LogEvent) -> str:
    t = ev.time_str
    return f"{t[:23]}Z {ev.service:<9} {ev.level:<5} {ev.message}"


def write_json(events: Iterable[LogEvent], out: IO[str], *, batch_size: int = 256) -> int:
    """One JSON object a line (see event.schema.json); returns the number written. Lines are
    written `batch_size` at a time (use 1 when following, so each line shows at once)."""
    n = 0
    write = out.write
    batch: list[str] = []
    for ev in events:
        batch.append(ev.to_json())
        n += 1
        if len(batch) >= batch_size:
            batch.append("")
            write("\n".join(batch))
            out.flush()
            batch = []
    if batch:
        batch.append("")
        write("\n".join(batch))
    out.flush()
    return n


def write_terminal(events: Iterable[LogEvent], out: IO[str], *, color: bool | None = None,
                   flush_each: bool = False) -> int:
    """`time service level message`, each service in its own colour when `out` is a terminal.
    `flush_each` (for --follow) shows every line at once."""
    if color is None:
        color = bool(getattr(out, "isatty", lambda: False)())
    n = 0
    if not color:
        write = out.write
        for ev in events:
            write(format_line(ev) + "\n")
            n += 1
            if flush_each:
                out.flush()
        out.flush()
        return n
    console = Console(file=out, highlight=False, markup=False, emoji=False, soft_wrap=True, force_terminal=True)
    for ev in events:
        text = Text()
        text.append(ev.time_str[:23] + "Z ", style="dim")
        text.append(f"{ev.service:<9} ", style=SERVICE_COLOURS.get(ev.service, "white"))
        text.append(f"{ev.level:<5} ", style=LEVEL_STYLES.get(ev.level, ""))
        text.append(ev.message)
        console.print(text)
        n += 1
        if flush_each:
            out.flush()
    return n


def run_logs(query: LogQuery, *, endpoint: DockerEndpoint | None = None, secrets: Iterable[str] = (),
             json_output: bool = False, follow: bool = False, out: IO[str] | None = None,
             color: bool | None = None, tz: tzinfo | None = None) -> int:
    """What `sfp-server logs` does; returns the exit code (0, also when stopped with Ctrl-C).
    SfpError propagates for the CLI to print."""
    out = out or sys.stdout
    endpoint = endpoint or DockerEndpoint()
    try:
        events = (follow_events(query, endpoint=endpoint, secrets=secrets, tz=tz) if follow
                  else read_events(query, endpoint=endpoint, secrets=secrets, tz=tz))
        try:
            if json_output:
                write_json(events, out, batch_size=1 if follow else 256)
            else:
                write_terminal(events, out, color=color, flush_each=follow)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            out.flush()
        return 0
    except BrokenPipeError:
        return 0
    finally:
        endpoint.close()
    return 0
