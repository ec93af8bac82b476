"""A corpus for installer/logs/masking.py: for every pattern, lines whose secret must not survive; and
ordinary lines (real services' logs among them) that must come out unchanged.

`test_every_rule_has_a_case` ties the corpus to the module: a rule added to masking._RULES without a
line here that it matches fails the suite.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from installer.logs import LogEvent, Masker, masking, write_json
from installer.logs.parsers import EventBuilder

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.Zm9vYmFyYmF6"
AGE = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS8FQQZQ"
PEM_BODY = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
            "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
            "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ"]
KNOWN = "org-known-secret-value-42"


def pem(kind: str = "PRIVATE KEY") -> str:
    return "\n".join([f"-----BEGIN {kind}-----", *PEM_BODY, f"-----END {kind}-----"])


# (rule, line, secrets that must not survive). `rule` names the pattern the line is for.
MASKED: list[tuple[str, str, list[str]]] = [
    ("known", f"the org secret {KNOWN} leaked", [KNOWN]),
    ("known", f'{{"note": "has {KNOWN}"}}', [KNOWN]),
    ("jwt", f"token {JWT} used", [JWT]),
    ("sb", "key sb_secret_Abc123-xyz_987 set", ["sb_secret_Abc123-xyz_987"]),
    ("sb", "key sb_publishable_QWERTY12345 set", ["sb_publishable_QWERTY12345"]),
    ("age", f"loaded identity {AGE} from the vault", [AGE[15:]]),
    ("age", f"recovery key: {AGE.lower()}", [AGE[15:].lower()]),
    ("pem", pem(), PEM_BODY),
    ("pem", pem("RSA PRIVATE KEY"), PEM_BODY),
    ("pem", pem("OPENSSH PRIVATE KEY"), PEM_BODY),
    ("pem", pem("ENCRYPTED PRIVATE KEY"), PEM_BODY),
    ("pem", "config " + json.dumps({"key": pem("EC PRIVATE KEY") + "\n"}), PEM_BODY),
    ("pem", f"-----BEGIN PRIVATE KEY----- {PEM_BODY[0]}", [PEM_BODY[0]]),  # no END: the rest goes
    ("authorization", "Authorization: Bearer opaque-token-value-999", ["opaque-token-value-999"]),
    ("authorization", "authorization=Bearer another-opaque-1234", ["another-opaque-1234"]),
    ("authorization", "Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==", ["dXNlcjpwYXNzd29yZA=="]),
    ("bearer", "upstream sent bearer abcdefgh12345xyz", ["abcdefgh12345xyz"]),
    ("kv", "GET /rest/v1/t?apikey=plainkey123&select=* HTTP/1.1 200", ["plainkey123"]),
    ("kv", "POST /x?password=hunter22 HTTP/1.1", ["hunter22"]),
    ("kv", "callback?token=abc.def.ghi&x=1", ["abc.def.ghi"]),
    ("kv", "DB_PASSWORD=db-pass-77 PGPASSWORD=pg-pass-78", ["db-pass-77", "pg-pass-78"]),
    ("kv", "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]),
    ("kv", "GET /b/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0&x=1",
     ["0f1e2d3c4b5a69788796a5b4c3d2e1f0"]),
    ("kv", "GET /b/o?X-Amz-Security-Token=FQoGZXIvYXdzEJr%2F&X-Amz-Expires=60", ["FQoGZXIvYXdzEJr%2F"]),
    ("kv", "grant_type=authorization_code&client_secret=cs-0123456789&code=x", ["cs-0123456789"]),
    ("kv", "VAULT_ENC_KEY=0123456789abcdef0123456789abcdef", ["0123456789abcdef0123456789abcdef"]),
    ("kv", "SECRET_KEY_BASE=UpNVntn3cDxHJpq99YMc1T1AQgQpc8kfYTuRgBiYa15BLrx8etQoXz3gZv1/u2oq", ["UpNVntn3cDxHJpq99YMc1T1AQgQpc8kfYTuRgBiYa15BLrx8etQoXz3gZv1/u2oq"]),
    ("kv", 'level=info msg="login" password="two words" user=bob', ["two words"]),
    ("kv", "ANON_KEY='single quoted value' DB_ENC_KEY=enc-key-16chars", ["single quoted value", "enc-key-16chars"]),
    ("kv", "line cut short: PASSWORD='unterminated-pw", ["unterminated-pw"]),
    ("kv", "refresh_token=rt-999 access_token=at-888 private_key=pk-777 jwt=jwt-666", ["rt-999", "at-888", "pk-777", "jwt-666"]),
    ("colon", "password: hunter22", ["hunter22"]),
    ("colon", "  DB_PASSWORD: s3cr3tValue", ["s3cr3tValue"]),
    ("colon", "db_password: 'quoted-yaml-pw'", ["quoted-yaml-pw"]),
    ("colon", 'secret_key_base: "UpNVntn3cDxHJpq99YMc1T1AQgQpc8kf"', ["UpNVntn3cDxHJpq99YMc1T1AQgQpc8kf"]),
    ("colon", '{"PGPASSWORD":"pg-secret-1","db_password": "db-secret-2", "private_key": "pk-secret-3"}',
     ["pg-secret-1", "db-secret-2", "pk-secret-3"]),
    ("colon", 'config: {"password": "with \\"escaped\\" quotes"}', ['with \\"escaped\\" quotes', "escaped"]),
    ("colon", "settings {'password': 'python-repr-pw', 'user': 'bob'}", ["python-repr-pw"]),
    ("colon", "X-Api-Key: header-key-123", ["header-key-123"]),
    ("colon", "client_secret: cs-abcdef, VAULT_ENC_KEY: vk-abcdef", ["cs-abcdef", "vk-abcdef"]),
    ("colon", "X-Amz-Security-Token: FQoGZXIvYXdzEJr", ["FQoGZXIvYXdzEJr"]),
    ("url", "dial postgres://supabase_admin:s3cr3t-pw@db:5432/postgres", ["s3cr3t-pw"]),
    ("url", "dial postgresql://authenticator:pw%40x@db/postgres?sslmode=disable", ["pw%40x"]),
    ("url", "fetch https://user:http-pass-1@example.test/x", ["http-pass-1"]),
]

# Lines that mention a secret's name, or look a little like one, and hold none: left alone.
ORDINARY = [
    'FATAL:  password authentication failed for user "authenticator"',
    '{"component":"api","method":"POST","msg":"request completed","path":"/token","status":200}',
    '172.18.0.1 - - [25/Nov/2026:21:00:00 +0000] "POST /auth/v1/token?grant_type=password HTTP/1.1" 200 512',
    "LOG:  duration: 0.123 ms  statement: select * from todos where id = 1",
    "secret rotation scheduled for 2026-01-01",
    '{"access_token_expires_in":3600,"token_type":"bearer"}',
    "password_changed_at: 2026-01-01T00:00:00Z",
    "max_tokens: 100, tokens=5",
    "cache_key=abc123 primary_key: id public_key: MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    '"secret": false, password: null, token: true',
    pem("CERTIFICATE"),
    pem("PUBLIC KEY"),
    "connecting to postgres://db:5432/postgres",
    "signature verified for key id 7f3a",
    "recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    "SELECT id FROM auth.users WHERE encrypted_password IS NOT NULL",
    "apikey header missing; no password given",
    "[info] Tenant realtime-dev: key rotation done",
    "user ab logged in",  # "ab" is a known value, but too short to mask
]


@pytest.mark.parametrize(("rule", "line", "secrets"), MASKED, ids=[f"{r}-{i}" for i, (r, _l, _s) in enumerate(MASKED)])
def test_line_is_masked(rule: str, line: str, secrets: list[str]) -> None:
    masked = Masker([KNOWN, "ab"]).text(line)
    assert masking.MASK in masked
    for secret in secrets:
        assert secret not in masked, (rule, masked)


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_line_is_left_alone(line: str) -> None:
    assert Masker([KNOWN, "ab"]).text(line) == line


def test_masking_keeps_the_context() -> None:
    m = Masker()
    assert m.text("DB_PASSWORD: s3cr3t and more") == "DB_PASSWORD: *** and more"
    assert m.text('password="two words" user=bob') == 'password="***" user=bob'
    assert m.text("{'password': 'x1', 'user': 'bob'}") == "{'password': '***', 'user': 'bob'}"
    assert m.text("X-Amz-Signature=abc123&X-Amz-Date=20261125") == "X-Amz-Signature=***&X-Amz-Date=20261125"
    assert m.text(f"id {AGE} ok") == "id AGE-SECRET-KEY-1*** ok"
    assert m.text(pem() + "\nserver started") == "-----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----\nserver started"


def test_every_rule_has_a_case() -> None:
    lines = [line for _r, line, _s in MASKED]
    for forms, rx, _repl in masking._RULES:
        assert any(rx.search(line) for line in lines), f"no corpus line for the rule with forms {forms[:3]}"
    # The known-secret rule is made per Masker: it too has its lines.
    assert any(KNOWN in line for line in lines)


SECRET_FIELDS = ["PGPASSWORD", "db_password", "private_key", "DB_PASSWORD", "password", "client_secret",
                 "aws_secret_access_key", "X-Amz-Signature", "vault_enc_key", "secret_key_base", "refresh_token",
                 "authorization", "Proxy-Authorization", "apikey", "api-key", "jwt", "service_role_key", "pwd"]
PLAIN_FIELDS = ["token_type", "password_changed_at", "max_tokens", "cache_key", "public_key", "secret_name", "keyid"]


@pytest.mark.parametrize("key", SECRET_FIELDS)
def test_field_named_like_a_secret_is_masked(key: str) -> None:
    value = f"plain-value-of-{key}"
    ev = Masker().event(LogEvent(1, "info", "request", {"nested": {key: value}, key: value, "n": 3}))
    assert ev.fields == {"nested": {key: masking.MASK}, key: masking.MASK, "n": 3}
    assert ev.fields_json is not None and value not in ev.fields_json


@pytest.mark.parametrize("key", PLAIN_FIELDS)
def test_field_with_an_ordinary_name_is_kept(key: str) -> None:
    fields = {key: "visible-value", "is_secret": True, "secret": ""}
    ev = Masker().event(LogEvent(1, "info", "request", dict(fields)))
    assert ev.fields == fields


def test_json_fields_of_a_parsed_line_are_masked() -> None:
    line = json.dumps({"level": "info", "msg": "config loaded", "PGPASSWORD": "pg-json-1",
                       "db": {"db_password": "pg-json-2", "private_key": pem()}, "path": "/token"})
    ev = EventBuilder("auth", org="o", host="local", container="sfp-o-auth").feed(1, line)
    assert ev is not None
    out = io.StringIO()
    write_json([Masker().event(ev)], out)
    for secret in ("pg-json-1", "pg-json-2", *PEM_BODY):
        assert secret not in out.getvalue()
    assert json.loads(out.getvalue())["fields"]["path"] == "/token"


def events(lines: list[tuple[str, str]]) -> list[LogEvent]:
    return [LogEvent(i, "info", text, {}, org="o", host="local", service=c, container=f"sfp-o-{c}")
            for i, (c, text) in enumerate(lines)]


def test_pem_key_one_line_per_event_is_masked_in_its_container_only() -> None:
    lines = [("auth", "loading key:"), ("auth", "-----BEGIN RSA PRIVATE KEY-----"), ("auth", PEM_BODY[0]),
             ("kong", "AAAABBBBCCCCDDDD"),  # another container's base64-looking line: not part of the key
             ("auth", PEM_BODY[1]), ("auth", PEM_BODY[2]), ("auth", "-----END RSA PRIVATE KEY-----"),
             ("auth", "server started"), ("auth", "ZZZZYYYYXXXX")]
    m = Masker()
    out = [m.event(ev).message for ev in events(lines)]
    assert out == ["loading key:", "-----BEGIN RSA PRIVATE KEY-----***", "***", "AAAABBBBCCCCDDDD", "***", "***",
                   "***-----END RSA PRIVATE KEY-----", "server started", "ZZZZYYYYXXXX"]


def test_pem_block_without_end_stops_at_an_ordinary_line() -> None:
    lines = [("db", "-----BEGIN PRIVATE KEY-----"), ("db", PEM_BODY[0]), ("db", "checkpoint complete"),
             ("db", "QUJDREVGR0g=")]
    m = Masker()
    out = [m.event(ev).message for ev in events(lines)]
    assert out == ["-----BEGIN PRIVATE KEY-----***", "***", "checkpoint complete", "QUJDREVGR0g="]


def test_pem_block_in_one_event_leaves_the_next_line_alone() -> None:
    m = Masker()
    out = [m.event(ev).message for ev in events([("db", pem()), ("db", "QUJDREVGR0g=")])]
    assert out == ["-----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----", "QUJDREVGR0g="]


SAMPLES = Path(__file__).parent / "samples"


def test_services_sample_logs_lose_only_their_keys() -> None:
    """The real services' sample lines: only those holding a JWT (the kong apikey) change."""
    m = Masker()
    changed = [line for p in sorted(SAMPLES.iterdir()) for line in p.read_text().splitlines() if m.text(line) != line]
    assert changed and all("eyJ" in line for line in changed), changed
