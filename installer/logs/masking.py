"""Hide credentials in log messages and fields before they reach a terminal, a JSON line or an archive."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .event import LogEvent

MASK = "***"

# Each alternative keeps what names the secret (group 1) and replaces only the secret itself.
_PATTERNS = [
    # JWTs: three base64url segments, the header starting eyJ ('{"').
    r"()eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
    # Supabase API keys.
    r"()sb_(?:secret|publishable)_[A-Za-z0-9_-]+",
    # Authorization headers (Bearer/Basic) in any spelling.
    r"((?i:\b(?:authorization|proxy-authorization)\b)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|basic|token)\s+)?)[^\s\"',;&]+",
    r"((?i:\bbearer)\s+)[A-Za-z0-9._~+/=-]{8,}",
    # Query string and key=value credentials.
    r"((?i:[?&;\s\"'{,]|^)(?i:apikey|api_key|api-key|password|passwd|pwd|token|access_token|refresh_token|secret|client_secret)=)[^&\s\"'#;,]+",
    # JSON-ish "password": "..." pairs inside messages.
    r"((?i:\"(?:password|apikey|api_key|token|access_token|refresh_token|secret|client_secret)\")\s*:\s*\")[^\"]*",
    # postgres://user:password@host
    r"((?i:\b(?:postgres|postgresql|mysql|redis|amqp|mongodb)(?:\+\w+)?://)[^:/@\s]*:)[^@\s/]+(?=@)",
]

_SENSITIVE_KEYS = frozenset({
    "password", "passwd", "apikey", "api_key", "authorization", "token", "access_token", "refresh_token",
    "secret", "client_secret", "jwt", "service_role_key", "anon_key",
})

# Cheap pre-check: a line with none of these substrings cannot match any pattern.
_TRIGGERS = ("eyJ", "sb_", "uthorization", "UTHORIZATION", "earer", "EARER", "=", '":', "://")


class Masker:
    """Replace secrets with `***`. `secrets` are the org's own known secret values (each masked
    wherever it appears); empty and very short values are ignored, since masking them would hide
    ordinary text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        pats = list(_PATTERNS)
        if known:
            pats.insert(0, "()(?:" + "|".join(re.escape(s) for s in known) + ")")
        self._re = re.compile("|".join(f"(?:{p})" for p in pats))
        self._known = tuple(known)
        self._triggers = _TRIGGERS + tuple(s[:6] for s in known)
        self._ngroups = self._re.groups

    def _sub(self, m: re.Match[str]) -> str:
        for i in range(1, self._ngroups + 1):
            g = m.group(i)
            if g is not None:
                return g + MASK
        return MASK

    def text(self, value: str) -> str:
        for t in self._triggers:
            if t in value:
                return self._re.sub(self._sub, value)
        return value

    def value(self, value: Any, key: str | None = None) -> Any:
        if key is not None and key.lower() in _SENSITIVE_KEYS and isinstance(value, str | int | float) \
                and not isinstance(value, bool) and value != "":
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def event(self, ev: LogEvent) -> LogEvent:
        """Mask in place (message and every field, nested) and return the event."""
        ev.message = self.text(ev.message)
        if ev.fields:
            ev.fields = {k: self.value(v, k) for k, v in ev.fields.items()}
        return ev
