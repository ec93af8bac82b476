"""Hide credentials in log messages and fields before they reach a terminal, a JSON line or an archive.

Masked (replaced by `***`): JWTs (three base64url segments, the first starting `eyJ`), `sb_secret_…`
and `sb_publishable_…` keys, `apikey=`/`password=`/`token=`/`secret=`-style values, `Authorization:`
header values and `Bearer …` tokens, the password of `scheme://user:password@host` URLs (postgres://
and any other), JSON-ish `"password": "…"` pairs inside text, values of fields named like a secret
(password, apikey, token, authorization, …), and the org's own known secret values wherever they occur.

Speed matters (every line of a busy org passes here): a string is first checked for a short list of
tell-tale words, lowercased (cheap `in` tests); only a string that has one is searched with the rule
whose word it has, each rule a regex that starts with a literal so it scans fast.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from .event import LogEvent, dumps_fields

MASK = "***"

SENSITIVE_KEYS = frozenset({
    "apikey", "api_key", "api-key", "password", "passwd", "pwd", "token", "access_token", "refresh_token",
    "secret", "client_secret", "authorization", "proxy-authorization", "jwt", "anon_key", "service_role_key",
})
_KV_WORDS = ("apikey", "api_key", "api-key", "password", "passwd", "pwd", "token", "secret")
_KV = "|".join(("access_token", "refresh_token", "client_secret", *_KV_WORDS))
_KEY_WORDS = tuple(sorted(SENSITIVE_KEYS))

Rule = tuple[tuple[str, ...], re.Pattern[str], Callable[[re.Match[str]], str] | str]


def _keep1(m: re.Match[str]) -> str:
    return m.group(1) + MASK


_RULES: list[Rule] = [
    (("eyj",), re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), MASK),
    (("sb_secret_", "sb_publishable_"), re.compile(r"sb_(?:secret|publishable)_[A-Za-z0-9_-]+"), MASK),
    (("authorization",),
     re.compile(r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|basic|token)\s+)?)[^\s\"',;&\\]+"), _keep1),
    (("bearer",), re.compile(r"((?i:bearer)\s+)[A-Za-z0-9._~+/=-]{8,}"), _keep1),
    (tuple(w + "=" for w in _KV_WORDS), re.compile(rf"((?i:{_KV})=)[^&\s\"'#;,\\]+"), _keep1),
    (tuple(w + '"' for w in _KEY_WORDS),
     re.compile(rf"(\"(?i:{'|'.join(re.escape(k) for k in _KEY_WORDS)})\"\s*:\s*\")[^\"\\]*"), _keep1),
    (("://",), re.compile(r"(://[^:/@\s\"']*:)[^@\s/\"']+(?=@)"), _keep1),
]


_JWT = _RULES[0][1]
_URL_CRED = _RULES[-1][1]
_COARSE = ("eyj", "sb_", "bearer", "auth", "pass", "pwd", "token", "secret", "key", "jwt", "://")


class Masker:
    """Replace secrets with `***`. `secrets` are the org's own known secret values (each masked
    wherever it appears); empty and very short values (under 6 characters) are ignored, since
    masking them would hide ordinary text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        rules = list(_RULES)
        if known:
            rules.insert(0, (tuple(s.lower() for s in known),
                             re.compile("|".join(re.escape(s) for s in known)), MASK))
        self._rules = rules
        known_low = [s.lower() for s in known]
        known_json = [json.dumps(s, ensure_ascii=False)[1:-1] for s in known_low]
        # Gates, cheapest first: a string can hold something to mask only if it has one of the
        # short `coarse` words (lowercased); for a serialised `fields`, each coarse word found is then
        # confirmed by its precise forms (`token=`, `"token":`, `\"token\":` …) before visiting values.
        fine: dict[str, tuple[str, ...]] = {}
        for coarse in _COARSE:
            forms: list[str] = []
            for k in _KV.split("|"):
                if coarse in k:
                    forms.append(f"{k}=")
            for k in _KEY_WORDS:
                if coarse in k:
                    forms += [f'"{k}":', f'\\"{k}\\":']
            fine[coarse] = tuple(forms)
        fine["bearer"] = ("bearer",)
        fine["auth"] += ("authorization",)
        fine["sb_"] = ("sb_secret_", "sb_publishable_")
        for k in [*known_low, *known_json]:
            fine[k] = (k,)
        self._fine = fine
        self._coarse = tuple(fine)

    def _maybe(self, low: str) -> bool:
        for w in self._coarse:  # noqa: SIM110 - a plain loop is faster than any() on this hot path
            if w in low:
                return True
        return False

    def text(self, value: str) -> str:
        low = value.lower()
        if not self._maybe(low):
            return value
        for words, rx, repl in self._rules:
            for w in words:
                if w in low:
                    if w == "://" and "@" not in low:
                        break
                    value = rx.sub(repl, value)
                    break
        return value

    def value(self, value: Any, key: str | None = None) -> Any:
        if key is not None and key.lower() in SENSITIVE_KEYS and isinstance(value, str | int | float) \
                and not isinstance(value, bool) and value != "":
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def needs(self, blob: str) -> bool:
        """Whether a serialised `fields` may hold anything to mask."""
        low = blob.lower()
        for coarse, forms in self._fine.items():
            if coarse not in low:
                continue
            if coarse == "eyj":
                if _JWT.search(blob):
                    return True
            elif coarse == "://":
                if "@" in low and _URL_CRED.search(blob):
                    return True
            elif any(f in low for f in forms):
                return True
        return False

    def event(self, ev: LogEvent) -> LogEvent:
        """Mask in place (message and every field, nested) and return the event; also leaves the
        masked fields serialised in `ev.fields_json` for the JSON output."""
        ev.message = self.text(ev.message)
        if ev.fields:
            blob = ev.fields_json or dumps_fields(ev.fields)
            if self.needs(blob):
                ev.fields = {k: self.value(v, k) for k, v in ev.fields.items()}
                blob = dumps_fields(ev.fields)
            ev.fields_json = blob
        else:
            ev.fields_json = "{}"
        return ev
