"""Hide credentials in log messages and fields before they reach a terminal, a JSON line or an archive.

Masked (replaced by `***`):
  * JWTs (three base64url segments, the first starting `eyJ`), `sb_secret_…`/`sb_publishable_…` keys,
    age identities (`AGE-SECRET-KEY-1…`), PEM private keys (the body of a `-----BEGIN … PRIVATE
    KEY-----` block; see `Masker.event` for blocks that arrive one line per event);
  * `Authorization:` header values and `Bearer …` tokens, the password of `scheme://user:password@host`;
  * the value after a secret's NAME, where a name is one of SECRET_NAMES or ends with one (DB_PASSWORD,
    PGPASSWORD, AWS_SECRET_ACCESS_KEY, X-Amz-Signature, VAULT_ENC_KEY, secret_key_base, client_secret):
    `NAME=value` (environment, query strings, key=value logs) and `NAME: value` / `"NAME": "value"`
    (YAML, headers, JSON and Python reprs inside text); values true/false/null are not secrets and stay;
  * the values of structured fields whose key is such a name, nested at any depth;
  * the org's own known secret values, wherever they occur.

Speed matters (every line of a busy org passes here): a string is first checked for a short list of
tell-tale `coarse` words, lowercased (cheap `in` tests); each coarse word found is confirmed by the
precise forms that contain it (`password=`, `password:`, `password":` …), and only the rules whose
forms were found run, in their fixed order. Ordinary lines that merely mention a word (`"/token"`,
`password authentication failed`) run no regex.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from .event import LogEvent, dumps_fields

MASK = "***"

# A name is a secret's if it is one of these or ends with one (compared lowercased).
SECRET_NAMES: tuple[str, ...] = (
    "password", "passwd", "pwd", "secret", "token", "apikey", "api_key", "api-key", "jwt",
    "private_key", "private-key", "secret_key", "secret_access_key", "enc_key", "key_base", "signature",
    "anon_key", "service_role_key",
)
# Field keys masked although no SECRET_NAMES suffix: the HTTP authorization headers. (In text, the
# Authorization rule masks their values, keeping the scheme word.)
SENSITIVE_KEYS = frozenset({"authorization", "proxy-authorization"})
_FIELD_SUFFIXES = (*SECRET_NAMES, "authorization")
_NOT_SECRET_VALUES = frozenset({"true", "false", "null", "~", "none", '""', "''"})

Repl = Callable[[re.Match[str]], str] | str


@functools.lru_cache(maxsize=4096)
def sensitive_key(key: str) -> bool:
    """Whether a field's value is a secret, by the field's name."""
    low = key.lower()
    return low in SENSITIVE_KEYS or low.endswith(_FIELD_SUFFIXES)


def _keep1(m: re.Match[str]) -> str:
    return m.group(1) + MASK


def _keep_quotes(m: re.Match[str]) -> str:
    """NAME=value / NAME: value: keep the name and a value's quotes; leave true/false/null alone."""
    value = m.group("v")
    if value.lower() in _NOT_SECRET_VALUES:
        return m.group(0)
    q = value[0]
    if q in "\"'" and len(value) >= 2 and value[-1] == q:
        return f"{m.group(1)}{q}{MASK}{q}"
    return m.group(1) + MASK


def _pem(m: re.Match[str]) -> str:
    return m.group(1) + MASK + m.group(2)


_NAMES_RX = "|".join(re.escape(n) for n in sorted(SECRET_NAMES, key=len, reverse=True))
# A quoted value (with escapes for double quotes) or a bare word.
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'"
_PEM_BEGIN = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
_PEM_END = r"-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"

# (gate forms, pattern, replacement). Each gate form is lowercase text that a match must contain; a
# rule runs only on a string holding one of its forms. Order matters: an earlier rule's `***` is
# plain text to the later ones.
_RULES: list[tuple[tuple[str, ...], re.Pattern[str], Repl]] = [
    (("eyj",), re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), MASK),
    (("sb_secret_", "sb_publishable_"), re.compile(r"sb_(?:secret|publishable)_[A-Za-z0-9_-]+"), MASK),
    (("age-secret-key-1",), re.compile(r"((?i:AGE-SECRET-KEY-1))[0-9A-Za-z]+"), _keep1),
    # A whole block when the text has it; without its END line (one line per event), all that follows.
    (("private key",), re.compile(rf"({_PEM_BEGIN})[\s\S]*?({_PEM_END}|\Z)"), _pem),
    (("authorization",),
     re.compile(r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|basic|token)\s+)?)[^\s\"',;&\\]+"), _keep1),
    (("bearer",), re.compile(r"((?i:bearer)\s+)[A-Za-z0-9._~+/=-]{8,}"), _keep1),
    (tuple(n + "=" for n in SECRET_NAMES),
     re.compile(rf"((?i:{_NAMES_RX})=)(?P<v>{_QUOTED}|[\"']?[^&\s\"'#;,\\]+)"), _keep_quotes),
    # NAME: value, the name (optionally quoted) starting the text or after a space, `{`, `,`, `(`, `[`.
    (tuple(n + s for n in SECRET_NAMES for s in (":", '":', "':")),
     re.compile(rf"(?<![^\s{{,(\[])((?P<q>[\"']?)[A-Za-z0-9_.-]*(?i:{_NAMES_RX})(?P=q):[ \t]*)"
                rf"(?P<v>{_QUOTED}|[^\s,;}}\]]+)"), _keep_quotes),
    (("://",), re.compile(r"(://[^:/@\s\"']*:)[^@\s/\"']+(?=@)"), _keep1),
]
_URL_RULE = len(_RULES) - 1
_JWT = _RULES[0][1]
_URL_CRED = _RULES[_URL_RULE][1]
_COARSE = ("eyj", "sb_", "bearer", "auth", "pass", "pwd", "token", "secret", "key", "jwt", "signature", "://")

# One line of a PEM body (base64, or an encrypted key's `Proc-Type:`/`DEK-Info:` header, or blank).
_PEM_BODY = re.compile(r"[A-Za-z0-9+/]+={0,2}|(?:Proc-Type|DEK-Info): [^\n]*|")
_PEM_OPEN_LINE = re.compile(rf"{_PEM_BEGIN}(?![\s\S]*{_PEM_END})")
_PEM_END_RX = re.compile(_PEM_END)
PEM_MAX_LINES = 200  # a 16384-bit RSA key has ~170 lines; past that, the block was not a key


class Masker:
    """Replace secrets with `***`. `secrets` are the org's own known secret values (each masked
    wherever it appears); empty and very short values (under 6 characters) are ignored, since
    masking them would hide ordinary text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        rules: list[tuple[tuple[str, ...], re.Pattern[str], Repl]] = list(_RULES)
        if known:
            rules.insert(0, (tuple(s.lower() for s in known), re.compile("|".join(re.escape(s) for s in known)), MASK))
        self._rules = [(1 << i, rx, repl) for i, (_w, rx, repl) in enumerate(rules)]
        self._url_bit = 1 << (_URL_RULE + (1 if known else 0))
        known_low = [s.lower() for s in known]
        # Gates for text: coarse word -> ((rule bit, the rule's forms holding that word), ...); each
        # known secret is a coarse word of its own.
        gates: dict[str, list[tuple[int, tuple[str, ...]]]] = {c: [] for c in (*_COARSE, *known_low)}
        for i, (forms, _rx, _repl) in enumerate(rules):
            for c in gates:
                held = tuple(f for f in forms if c in f)
                if held:
                    gates[c].append((1 << i, held))
            orphans = [f for f in forms if not any(c in f for c in gates)]
            assert not orphans, f"masking forms reachable by no coarse word: {orphans}"
        self._gates = tuple((c, tuple(g)) for c, g in gates.items() if g)
        self._coarse = tuple(c for c, _g in self._gates)
        # Gates for a serialised `fields` (JSON): the forms of text rules, plus a key named like a
        # secret (`password":`) and the same inside a JSON string (`password\":`).
        key_forms = [f"{n}{s}" for n in _FIELD_SUFFIXES for s in ('":', '\\":')]
        all_forms = [f for forms, _rx, _r in rules for f in forms] + key_forms
        fine = {c: tuple(f for f in all_forms if c in f) for c, _g in self._gates}
        # A known secret with a quote, backslash or control character is escaped in the JSON.
        for k in known_low:
            escaped = json.dumps(k, ensure_ascii=False)[1:-1]
            fine.setdefault(escaped, (escaped,))
        self._fine = fine
        self._pem_open: dict[tuple[str, str], int] = {}

    def text(self, value: str) -> str:
        low = value.lower()
        # Most lines hold no coarse word at all: a plain loop over strings is the fastest way to say so.
        for coarse in self._coarse:
            if coarse in low:
                break
        else:
            return value
        return self._apply(value, low)

    def _apply(self, value: str, low: str) -> str:
        todo = 0
        for coarse, gates in self._gates:
            if coarse in low:
                for bit, forms in gates:
                    if not todo & bit:
                        for f in forms:
                            if f in low:
                                todo |= bit
                                break
        if not todo:
            return value
        if todo & self._url_bit and "@" not in low:
            todo &= ~self._url_bit
        for bit, rx, repl in self._rules:
            if todo & bit:
                value = rx.sub(repl, value)
        return value

    def value(self, value: Any, key: str | None = None) -> Any:
        if key is not None and isinstance(value, str | int | float) and not isinstance(value, bool) \
                and value != "" and sensitive_key(key):
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

    # A PEM key printed to a container's log arrives one line per event: after a BEGIN line without
    # its END, the following base64 lines of the same container are masked too, up to the END line.
    def _pem_line(self, ev: LogEvent) -> bool:
        """Whether `ev` is a line inside an open PEM block of its container (then masked whole)."""
        stream = (ev.host, ev.container)
        lines = self._pem_open.get(stream)
        if lines is None:
            return False
        line = ev.message.strip()
        if _PEM_END_RX.search(line):
            del self._pem_open[stream]
            ev.message = MASK + line[line.index("-----END"):]
            return True
        if lines >= PEM_MAX_LINES or not _PEM_BODY.fullmatch(line):
            del self._pem_open[stream]
            return False
        self._pem_open[stream] = lines + 1
        ev.message = MASK
        return True

    def event(self, ev: LogEvent) -> LogEvent:
        """Mask in place (message and every field, nested) and return the event; also leaves the
        masked fields serialised in `ev.fields_json` for the JSON output."""
        if not (self._pem_open and self._pem_line(ev)):
            message = ev.message
            # PEM armour is upper case: a plain `in` keeps this off the hot path.
            if "PRIVATE KEY" in message and _PEM_OPEN_LINE.search(message):
                self._pem_open[(ev.host, ev.container)] = 0
            ev.message = self.text(message)
        if ev.fields:
            blob = ev.fields_json or dumps_fields(ev.fields)
            if self.needs(blob):
                ev.fields = {k: self.value(v, k) for k, v in ev.fields.items()}
                blob = dumps_fields(ev.fields)
            ev.fields_json = blob
        else:
            ev.fields_json = "{}"
        return ev

