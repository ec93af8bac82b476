"""Small HTTP helpers shared by the SSO validators: bounded GETs and URL scheme rules."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from installer.errors import SfpError

DEFAULT_TIMEOUT = 10.0
MAX_BYTES = 5 * 1024 * 1024  # IdP metadata and discovery documents are small; refuse anything huge.


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


def http_get(
    url: str,
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    accept: str = "*/*",
    session: requests.Session | None = None,
    max_bytes: int = MAX_BYTES,
) -> Response:
    """GET `url`; raise SfpError naming `what` when it cannot be reached or is too large.

    Non-2xx statuses are returned, not raised, so callers can word them for their case.
    """
    getter = session.get if session is not None else requests.get
    try:
        with getter(url, timeout=timeout, stream=True, headers={"Accept": accept}, allow_redirects=True) as r:
            if urlsplit(url).scheme == "https" and urlsplit(r.url).scheme != "https":
                raise SfpError(f"{what} at {url} redirected to a non-https URL ({r.url}); refused",
                               "use the final https URL of the document, or fix the IdP's redirect")
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
            return Response(r.url, r.status_code, {k.lower(): v for k, v in r.headers.items()}, b"".join(chunks))
    except requests.Timeout:
        raise SfpError(
            f"{what} at {url} did not answer within {timeout:g} s",
            "check that the IdP is up and reachable from this machine (firewall, proxy, DNS)",
        ) from None
    except requests.exceptions.SSLError as exc:
        raise SfpError(
            f"TLS error fetching {what} at {url}: {_short(exc)}",
            "the IdP's certificate must be valid for its host name and trusted by this machine",
        ) from None
    except requests.RequestException as exc:
        raise SfpError(
            f"cannot reach {what} at {url}: {_short(exc)}",
            "check the URL, and that the IdP is up and reachable from this machine (firewall, proxy, DNS)",
        ) from None


def _short(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolutionError" in text:
        return "host name does not resolve"
    return text if len(text) < 200 else text[:200] + "…"
