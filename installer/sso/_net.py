"""Small HTTP helpers shared by the SSO validators: bounded GETs, URL scheme and address rules.

IdP URLs come from operators and, through redirects and discovery documents, from the IdP itself:
they are untrusted. Every hop of a fetch is checked before it is followed: https only (http to
loopback when the test-only allowance is on), never a link-local address or a cloud metadata
service (which hands out the machine's credentials), after resolving the host name and again
against the address actually connected to (a name that resolves differently the second time).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from installer.errors import SfpError

DEFAULT_TIMEOUT = 10.0
MAX_BYTES = 5 * 1024 * 1024  # IdP metadata and discovery documents are small; refuse anything huge.
MAX_REDIRECTS = 5

# Instance metadata services. Most sit at the link-local 169.254.169.254 (refused with all of
# 169.254.0.0/16 and fe80::/10); these are the ones outside link-local ranges, and the names
# that point at them.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",   # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack, Hetzner ...
    "169.254.170.2",     # AWS ECS task metadata
    "fd00:ec2::254",     # AWS IPv6
    "fd00:ec2::23",      # AWS Route 53 resolver / time sync (IPv6)
    "100.100.100.200",   # Alibaba Cloud
    "192.0.0.192",       # Oracle Cloud (legacy)
))
METADATA_HOSTNAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
ALLOW_HOST_HINT = ("if the IdP really is at that address, allow its host name explicitly: "
                   "`sfp-server sso add ... --allow-host HOST` (sso.yml: allow_hosts)")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Response:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_scheme_problem(url: str, what: str, *, allow_insecure_loopback: bool) -> str | None:
    """None when `url` is acceptable: https, or http to a loopback host when explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} {url!r} is not an absolute http(s) URL"
    if parts.scheme == "https":
        return None
    if allow_insecure_loopback and is_loopback_host(parts.hostname):
        return None
    return f"{what} {url!r} does not use https"


def normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def forbidden_address(address: str | Address) -> bool:
    """Link-local or a metadata service, however written (IPv4-mapped, NAT64, 6to4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return False
    candidates: list[Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            candidates.append(ip.sixtofour)
        if ip in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return any(c in METADATA_ADDRESSES or c.is_link_local for c in candidates)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to ([] when it does not resolve: the request then says so)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def host_problem(url: str, what: str, *, allow_hosts: Collection[str] = ()) -> str | None:
    """None when `url`'s host is neither a metadata service name nor resolves to a refused address."""
    parts = urlsplit(url)
    host = normalize_host(parts.hostname or "")
    if not host or host in {normalize_host(h) for h in allow_hosts}:
        return None
    if host in METADATA_HOSTNAMES:
        return f"{what} URL {url!r} names {host}, a cloud metadata service; refused"
    try:
        addresses: Iterable[str] = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    bad = [a for a in addresses if forbidden_address(a)]
    if bad:
        return (f"{what} URL {url!r}: {host} is (or resolves to) {', '.join(bad)}, a link-local or cloud "
                "metadata service address; refused")
    return None


def check_target(url: str, what: str, *, allow_insecure_loopback: bool, allow_hosts: Collection[str] = ()) -> None:
    """Raise SfpError unless `url` may be fetched (scheme and address rules)."""
    problem = url_scheme_problem(url, f"{what} URL", allow_insecure_loopback=allow_insecure_loopback)
    if problem:
        raise SfpError(problem, "use the document's https URL")
    problem = host_problem(url, what, allow_hosts=allow_hosts)
    if problem:
        raise SfpError(problem, ALLOW_HOST_HINT)


def http_get(
    url: str,
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    accept: str = "*/*",
    session: requests.Session | None = None,
    max_bytes: int = MAX_BYTES,
    allow_insecure_loopback: bool = False,
    allow_hosts: Collection[str] = (),
    max_redirects: int = MAX_REDIRECTS,
) -> Response:
    """GET `url`; raise SfpError naming `what` when it is refused, cannot be reached or is too large.

    Redirects are followed here, not by requests, so that every hop is checked before it is
    requested. Non-2xx statuses are returned, not raised, so callers can word them for their case.
    """
    getter = session.get if session is not None else requests.get
    current = url
    for hop in range(max_redirects + 1):
        check_target(current, what, allow_insecure_loopback=allow_insecure_loopback, allow_hosts=allow_hosts)
        try:
            with getter(current, timeout=timeout, stream=True, headers={"Accept": accept}, allow_redirects=False) as r:
                _check_peer(r, current, what, allow_hosts)
                if r.is_redirect:
                    current = _next_hop(url, current, r.headers["location"], what, hop, max_redirects,
                                        allow_insecure_loopback, allow_hosts)
                    continue
                body = _read_bounded(r, current, what, max_bytes)
                return Response(current, r.status_code, {k.lower(): v for k, v in r.headers.items()}, body)
        except requests.Timeout:
            raise SfpError(
                f"{what} at {current} did not answer within {timeout:g} s",
                "check that the IdP is up and reachable from this machine (firewall, proxy, DNS)",
            ) from None
        except requests.exceptions.SSLError as exc:
            raise SfpError(
                f"TLS error fetching {what} at {current}: {_short(exc)}",
                "the IdP's certificate must be valid for its host name and trusted by this machine",
            ) from None
        except requests.RequestException as exc:
            raise SfpError(
                f"cannot reach {what} at {current}: {_short(exc)}",
                "check the URL, and that the IdP is up and reachable from this machine (firewall, proxy, DNS)",
            ) from None
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _next_hop(origin: str, current: str, location: str, what: str, hop: int, max_redirects: int,
              allow_insecure_loopback: bool, allow_hosts: Collection[str]) -> str:
    target = urljoin(current, location)
    if hop >= max_redirects:
        raise SfpError(f"{what} at {origin} redirected more than {max_redirects} times; refused",
                       "use the final URL of the document")
    if urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https":
        raise SfpError(f"{what} at {origin} redirected to a non-https URL ({target}); refused",
                       "use the final https URL of the document, or fix the IdP's redirect")
    try:
        check_target(target, what, allow_insecure_loopback=allow_insecure_loopback, allow_hosts=allow_hosts)
    except SfpError as exc:
        raise SfpError(f"{what} at {origin} redirected to {target!r}, which is refused: {exc.message}",
                       exc.hint) from None
    return target


def _check_peer(r: requests.Response, url: str, what: str, allow_hosts: Collection[str]) -> None:
    """The address actually connected to, in case the name resolved differently for the request."""
    host = normalize_host(urlsplit(url).hostname or "")
    if host in {normalize_host(h) for h in allow_hosts}:
        return
    peer = _peer_address(r)
    if peer is not None and forbidden_address(peer):
        raise SfpError(f"{what} at {url} was answered from {peer}, a link-local or cloud metadata service "
                       "address; refused", ALLOW_HOST_HINT)


def _peer_address(r: requests.Response) -> str | None:
    conn: Any = getattr(r.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        return None
    try:
        return str(sock.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return None


def _read_bounded(r: requests.Response, url: str, what: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in r.iter_content(65536):
        size += len(chunk)
        if size > max_bytes:
            raise SfpError(
                f"{what} at {url} is larger than {max_bytes // (1024 * 1024)} MiB; refusing to read it",
                "check that the URL points at the document itself, not at a page or an archive",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _short(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolutionError" in text:
        return "host name does not resolve"
    return text if len(text) < 200 else text[:200] + "…"
