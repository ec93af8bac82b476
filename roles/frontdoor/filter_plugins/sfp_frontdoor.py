"""The front door's input checks: what a public host name, a gateway URL and a certificate's names must be.

They run before anything is written, so a wrong value fails the play with a message naming the
variable instead of leaving Apache with a vhost it refuses (or worse, one it accepts and serves to
the wrong name). Only `re` is imported: the filter plugins load in every Ansible worker
(tests/roles/test_warm_callback.py).
"""

from __future__ import annotations

import re
from typing import Any

# RFC 1123 labels, at least two of them (a public name, not a bare host), total under 254.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# http://ADDR:PORT[/]: Kong listens on an address of the host, plain HTTP (TLS ends here).
_UPSTREAM = re.compile(r"^http://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.-]+):(?P<port>[0-9]{1,5})/?$")


def hostname_problem(name: Any) -> str:
    """'' when `name` is a DNS name Apache can serve (lower case, no trailing dot), else why not."""
    if not isinstance(name, str) or not name:
        return "it is empty or not a string"
    if name != name.lower():
        return "it has upper-case letters (write it in lower case)"
    if len(name) > 253:
        return "it is longer than 253 characters"
    labels = name.split(".")
    if len(labels) < 2:
        return "it is a single label; the public name must be a fully qualified name such as supabase.example.org"
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        return f"the label {bad[0]!r} is not a DNS label (letters, digits and inner hyphens, 1 to 63 characters)"
    if labels[-1].isdigit():
        return "it is an IP address or ends in a number; the front door serves names (SNI), not addresses"
    return ""


def upstream_problem(url: Any) -> str:
    """'' when `url` is http://ADDR:PORT with a port in range, else why not."""
    match = _UPSTREAM.match(url) if isinstance(url, str) else None
    if match is None:
        return "it must be http://ADDR:PORT (the org's gateway, plain HTTP on the host), e.g. http://127.0.0.1:8000"
    if not 0 < int(match["port"]) < 65536:
        return f"the port {match['port']} is out of range"
    return ""


def upstream_origin(url: str) -> str:
    """http://ADDR:PORT without a trailing slash (the vhost appends the path)."""
    return url.rstrip("/")


def cert_covers(sans: Any, hostname: str) -> bool:
    """Whether a certificate with these subjectAltName entries (x509_certificate_info's
    `subject_alt_name`, e.g. ['DNS:a.example.org', 'DNS:*.example.org']) is valid for `hostname`.
    A wildcard stands for exactly one left-most label, as browsers read it (RFC 6125)."""
    names = [str(s)[4:].lower().rstrip(".") for s in (sans or []) if str(s).startswith("DNS:")]
    if hostname in names:
        return True
    parent = hostname.split(".", 1)[1] if "." in hostname else ""
    return bool(parent) and f"*.{parent}" in names


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "sfp_frontdoor_hostname_problem": hostname_problem,
            "sfp_frontdoor_upstream_problem": upstream_problem,
            "sfp_frontdoor_upstream_origin": upstream_origin,
            "sfp_frontdoor_cert_covers": cert_covers,
        }
