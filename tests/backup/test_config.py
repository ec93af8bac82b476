"""Backup settings validation, cron expressions, and the small pure pieces of the format."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from installer.backup import generate_recovery_key, parse_settings
from installer.backup.content import globals_script
from installer.backup.cron import cron_problem
from installer.backup.manifest import database_key, is_set_id, new_set_id, set_time
from installer.backup.report import metrics_path, read_metrics, write_metrics
from installer.errors import ConfigError

RECIPIENT = generate_recovery_key()[1]


def valid(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "store": {"endpoint_url": "https://s3.example.net", "region": "eu-central-1", "bucket": "sfp-backups",
                  "prefix": "prod/sfp", "path_style": True, "checksum_mode": "when_required",
                  "credentials": {"source": "vault", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-value"}},
        "recipient": RECIPIENT,
        "schedule": "17 3 * * *",
        "retention": {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6, "keep_yearly": 1},
        "webhook_url": "https://hooks.example.net/x",
        "jobs": 3,
    }
    data.update(over)
    return data


def test_valid_settings() -> None:
    s = parse_settings(valid())
    assert s.store.bucket == "sfp-backups" and s.store.prefix == "prod/sfp" and s.store.path_style
    assert s.store.checksum_mode == "when_required" and s.store.credentials == "vault"
    assert s.retention.keep_monthly == 6 and s.jobs == 3 and s.schedule == "17 3 * * *"
    assert "s3cr3t-value" not in repr(s)


def test_defaults() -> None:
    s = parse_settings({"store": {"bucket": "b-1"}, "recipient": RECIPIENT})
    assert s.store.credentials == "instance" and s.store.checksum_mode == "when_supported" and s.store.endpoint_url is None
    assert s.jobs == 2 and s.retention.keep_daily == 7


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_settings(data)
    assert "s3cr3t-value" not in str(err.value)
    return {p.where: p.message for p in err.value.problems}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"schedule": "61 3 * * *"}, "backup.schedule", "outside 0-59"),
    ({"schedule": "0 3 * *"}, "backup.schedule", "5 fields"),
    ({"recipient": "age1nope"}, "backup.recipient", "age X25519 recipient"),
    ({"jobs": 0}, "backup.jobs", "less than the minimum"),
    ({"webhook_url": "ftp://x"}, "backup.webhook_url", "http(s)"),
    ({"retention": {"keep_daily": -1}}, "backup.retention.keep_daily", "minimum"),
    ({"retention": {"keep_hourly": 1}}, "backup.retention", "keep_hourly"),
    ({"colour": "blue"}, "backup", "colour"),
])
def test_bad_fields_are_named(change: dict[str, Any], field: str, words: str) -> None:
    found = problems(valid(**change))
    assert field in found and words in found[field], found


def test_store_problems_all_reported_at_once() -> None:
    data = valid()
    data["store"] = {"bucket": "Bad_Bucket", "prefix": "/a//b", "endpoint_url": "s3.example.net", "checksum_mode": "sometimes",
                     "credentials": {"source": "vault"}}
    found = problems(data)
    assert "backup.store.checksum_mode" in found  # schema errors first…
    data["store"]["checksum_mode"] = "when_supported"
    found = problems(data)  # …then everything else, all at once
    assert {"backup.store.bucket", "backup.store.prefix", "backup.store.endpoint_url",
            "backup.store.credentials.access_key_id", "backup.store.credentials.secret_access_key"} <= set(found)


def test_secret_value_never_quoted() -> None:
    data = valid()
    data["store"]["credentials"]["secret_access_key"] = 12345
    found = problems(data)
    assert found["backup.store.credentials.secret_access_key"] == "has the wrong type"
    data = valid()
    data["store"]["credentials"] = {"source": "env", "secret_access_key": "s3cr3t-value"}
    assert "backup.store.credentials" in problems(data)


@pytest.mark.parametrize("expr", ["17 3 * * *", "*/15 * * * *", "0 0-6/2 1,15 jan-mar mon-fri", "@daily", "0 4 * * 7"])
def test_cron_valid(expr: str) -> None:
    assert cron_problem(expr) is None


@pytest.mark.parametrize("expr", ["", "* * * * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *", "5-1 * * * *",
                                  "*/0 * * * *", "0 0 * * funday", "@sometimes", "a b c d e"])
def test_cron_invalid(expr: str) -> None:
    assert cron_problem(expr)


def test_set_ids_sort_by_time() -> None:
    from datetime import UTC, datetime
    a = new_set_id(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    b = new_set_id(datetime(2025, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert is_set_id(a) and a < b and set_time(a) == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert not is_set_id("latest") and not is_set_id("20250101T000000Z")


def test_database_keys_are_ascii_and_unambiguous() -> None:
    assert database_key("postgres") == "db/postgres.pgdump.zst.age"
    assert database_key("a/b c") == "db/a%2Fb%20c.pgdump.zst.age"
    assert database_key("odd name-ü") == "db/odd%20name-%C3%BC.pgdump.zst.age"


def test_globals_script_skips_existing_roles_only() -> None:
    text = 'CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE anon;\nCREATE ROLE "Weird ""x""";\n'
    out = globals_script(text, {"postgres", 'Weird "x"'})
    assert out == "ALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE anon;\n"


def test_metrics_textfile_merges_and_replaces(tmp_path: Path) -> None:
    write_metrics(tmp_path, "acme", last_success_timestamp_seconds=1700000000, last_size_bytes=1234, last_duration_seconds=1.5)
    write_metrics(tmp_path, "acme", last_failure_timestamp_seconds=1700000100)
    values = read_metrics(metrics_path(tmp_path, "acme"))
    assert values == {"sfp_backup_last_success_timestamp_seconds": 1700000000, "sfp_backup_last_size_bytes": 1234,
                      "sfp_backup_last_duration_seconds": 1.5, "sfp_backup_last_failure_timestamp_seconds": 1700000100}
    text = metrics_path(tmp_path, "acme").read_text()
    assert '# TYPE sfp_backup_last_size_bytes gauge' in text and 'sfp_backup_last_size_bytes{org="acme"} 1234' in text
    assert [p.name for p in tmp_path.iterdir()] == ["sfp_backup_acme.prom"]  # no temp file left


def test_storage_tar_roundtrip_without_s3(tmp_path: Path) -> None:
    import os

    from installer.backup.storage_tar import extract_tar, write_tar
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    (src / "b" / "f").write_bytes(b"data")
    os.setxattr(src / "b" / "f", "user.supabase.content-type", b"text/plain")
    os.setxattr(src / "b" / "f", "user.supabase.bin", bytes(range(256)))
    buffer = io.BytesIO()
    assert write_tar(src, buffer) == 1
    buffer.seek(0)
    assert extract_tar(buffer, tmp_path / "dst") == 1
    dst = tmp_path / "dst" / "b" / "f"
    assert os.getxattr(dst, "user.supabase.bin") == bytes(range(256))
    assert os.getxattr(dst, "user.supabase.content-type") == b"text/plain"
