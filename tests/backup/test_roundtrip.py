"""Backup → list → verify → restore into a fresh cluster, compared with pg_dumpall; storage and secrets round-trip."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from installer.backup import api
from installer.backup.manifest import FORMAT, GLOBALS_KEY, SECRETS_KEY, STORAGE_KEY
from installer.backup.report import metrics_path, read_metrics

from .conftest import ORG_CONFIG, SECRETS, SIGNING_KEY, TRUST, make_settings
from .support import PgCluster, RcloneS3

# pg_dumpall output differs between two dumps of the same cluster only by the random key of the
# `\restrict` / `\unrestrict` lines that PostgreSQL 15.14+ writes (a defence against malicious
# dump content); everything else (roles with password hashes, database properties, ACLs,
# sequences' values, large objects, data) must be byte-identical.
_RESTRICT = re.compile(r"^\\(un)?restrict \S+$", re.M)


def normalise(dump: str) -> str:
    return _RESTRICT.sub(r"\\\1restrict KEY", dump)


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under root: type, mode, mtime (not for dirs and links), content, xattrs."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
                continue
            xattrs = {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}
            if path.is_dir():
                out[rel] = ("dir", oct(st.st_mode), xattrs)
            else:
                out[rel] = ("file", oct(st.st_mode), int(st.st_mtime), path.read_bytes(), xattrs)
    return out


@pytest.mark.slow
def test_backup_verify_restore_roundtrip(s3_server: RcloneS3, source_cluster: PgCluster, fresh_cluster: PgCluster,
                                         storage_dir: Path, recovery_key: tuple[str, str], tmp_path: Path) -> None:
    identity, recipient = recovery_key
    store = s3_server.store("roundtrip")
    settings = make_settings(store, recipient, jobs=2)
    before = source_cluster.dumpall()

    result = api.run_backup(settings, "acme", source_cluster.database(), storage_dir=storage_dir, org_config=ORG_CONFIG,
                            secrets=SECRETS, signing_key=SIGNING_KEY, release="1.2.3", images={"db": "supabase/postgres:17.4.1"},
                            metrics_dir=tmp_path / "metrics", part_size=5 * 1024 * 1024)

    # The manifest says what the format promises.
    m = result.manifest
    assert m.format == FORMAT and m.org == "acme" and m.set_id == result.set_id and m.recipient == recipient
    assert m.release == "1.2.3" and m.images == {"db": "supabase/postgres:17.4.1"} and m.postgres_major == 15
    keys = {o.key for o in m.objects}
    assert {GLOBALS_KEY, STORAGE_KEY, SECRETS_KEY, "db/postgres.pgdump.zst.age", "db/app.pgdump.zst.age",
            "db/odd_name_%C3%BC.pgdump.zst.age"} == keys
    assert sorted(str(o.database) for o in m.databases()) == ["app", "odd_name_ü", "postgres"]
    raw = json.loads((s3_server.root / "roundtrip" / "sfp" / "acme" / result.set_id / "manifest.json").read_text())
    assert raw["format"] == 1 and all(len(o["sha256"]) == 64 and len(o["plaintext_sha256"]) == 64 for o in raw["objects"])
    # Nothing secret in the bucket in clear: the secrets document is encrypted.
    for path in (s3_server.root / "roundtrip").rglob("*"):
        if path.is_file():
            assert SECRETS["JWT_SECRET"].encode() not in path.read_bytes()

    metrics = read_metrics(metrics_path(tmp_path / "metrics", "acme"))
    assert metrics["sfp_backup_last_size_bytes"] == result.size > 0
    assert metrics["sfp_backup_last_success_timestamp_seconds"] > 0

    sets = api.list_sets(store, "acme")
    assert [s.set_id for s in sets] == [result.set_id] and sets[0].complete and sets[0].verified_at is None

    report = api.verify_set(store, "acme", "latest", identity, trust=TRUST, tools=source_cluster.database())
    assert report.ok and len(report.objects) == len(m.objects)
    assert api.list_sets(store, "acme")[0].verified_at is not None

    target_storage = tmp_path / "restored-storage"
    restored = api.restore_set(store, "acme", result.set_id, identity, fresh_cluster.database(), trust=TRUST,
                               storage_dir=target_storage, jobs=2, workdir=tmp_path)
    assert restored.secrets == SECRETS and restored.org_config == ORG_CONFIG
    assert sorted(restored.databases) == ["app", "odd_name_ü", "postgres"]

    after = fresh_cluster.dumpall()
    assert normalise(after) == normalise(before)
    assert tree(target_storage) == tree(storage_dir)
    assert restored.storage_files == 4
