"""The major upgrade's local copy and its on-host steps, with crafted inputs (no database needed):
a copy is loaded only when complete and unchanged, names never leave their directory, and the
cluster an org runs is never removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from installer.errors import SfpError
from installer.upgrade import dataset, host_job


def complete_copy(path: Path, databases: list[str] | None = None, **manifest: object) -> Path:
    path.mkdir()
    (path / "key").mkdir()
    (path / "globals.sql").write_text("CREATE ROLE a;\n")
    (path / "postgres.data.dump").write_bytes(b"PGDMP data")
    (path / "postgres.post.dump").write_bytes(b"PGDMP post")
    files = {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}
    body = {"format": 1, "postgres_major": 15, "databases": databases or ["postgres"], "files": files,
            "key_files": ["/etc/postgresql-custom/pgsodium_root.key", "/etc/passwd"], **manifest}
    (path / dataset.COMPLETE).write_text(json.dumps(body))
    return path


def test_a_complete_copy_reads_back_with_only_the_toolkits_key_files(tmp_path: Path) -> None:
    copy = dataset.read(complete_copy(tmp_path / "c"))
    assert copy.databases == ["postgres"] and copy.postgres_major == 15
    # A key file path the toolkit does not back up is dropped, never written anywhere.
    assert copy.key_files == ["/etc/postgresql-custom/pgsodium_root.key"]


def test_an_interrupted_dump_is_never_loaded(tmp_path: Path) -> None:
    path = complete_copy(tmp_path / "c")
    (path / dataset.COMPLETE).unlink()
    with pytest.raises(SfpError, match="no complete copy"):
        dataset.read(path)


def test_a_file_changed_after_the_dump_refuses_the_copy(tmp_path: Path) -> None:
    path = complete_copy(tmp_path / "c")
    (path / "postgres.data.dump").write_bytes(b"PGDMP data, and more")
    with pytest.raises(SfpError, match="missing or changed"):
        dataset.read(path)


@pytest.mark.parametrize("crafted", ["../../etc/passwd", "/etc/passwd", "key/../../outside"])
def test_a_manifest_naming_a_file_outside_the_copy_is_refused(tmp_path: Path, crafted: str) -> None:
    (tmp_path / "outside").write_text("x")
    path = complete_copy(tmp_path / "c")
    body = json.loads((path / dataset.COMPLETE).read_text())
    body["files"][crafted] = 1
    (path / dataset.COMPLETE).write_text(json.dumps(body))
    with pytest.raises(SfpError, match="missing or changed"):
        dataset.read(path)


@pytest.mark.parametrize("name", ["../postgres", "a/b", ".hidden", ""])
def test_a_database_name_that_is_no_file_name_is_refused(tmp_path: Path, name: str) -> None:
    path = complete_copy(tmp_path / "c", databases=[name])
    with pytest.raises(SfpError, match="cannot be a file name"):
        dataset.read(path)


def test_a_copy_of_another_format_is_refused(tmp_path: Path) -> None:
    path = complete_copy(tmp_path / "c", format=2)
    with pytest.raises(SfpError, match="not a copy this toolkit wrote"):
        dataset.read(path)


def test_removal_takes_the_marker_first(tmp_path: Path) -> None:
    path = complete_copy(tmp_path / "c")
    dataset.remove(path)
    assert not path.exists()
    dataset.remove(path)  # nothing left: no error


COMPOSE = """name: sfp-acme
volumes:
  db-config:
    name: "sfp-acme-db-config-pg15"
services:
  db:
    volumes:
      - ./volumes/db/data-pg15:/var/lib/postgresql/data:Z
"""


@pytest.mark.parametrize(("data_dir", "volume"), [("data-pg15", "db-config"), ("data", "db-config-pg15")])
def test_the_cluster_the_org_runs_is_never_dropped(tmp_path: Path, data_dir: str, volume: str) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "volumes/db/data-pg15").mkdir(parents=True)
    cfg = {"project": "sfp-acme", "org_dir": str(tmp_path), "data_dir": data_dir, "config_volume": volume}
    with pytest.raises(SfpError, match="is the cluster sfp-acme runs"):
        host_job.drop_cluster(cfg)
    assert (tmp_path / "volumes/db/data-pg15").is_dir()


@pytest.mark.parametrize("bad", ["..", "../data", "a/b", "", "-rf", "x" * 101])
def test_names_in_a_step_config_are_plain(tmp_path: Path, bad: str) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    cfg = {"project": "sfp-acme", "org_dir": str(tmp_path), "data_dir": bad, "config_volume": "db-config"}
    with pytest.raises(SfpError, match="not a plain directory or volume name"):
        host_job.drop_cluster(cfg)


def test_an_unknown_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SfpError, match="unknown step"):
        host_job.run({"step": "wipe", "project": "sfp-acme", "org_dir": str(tmp_path)})


def test_storage_files_come_back_with_attributes_and_owner(tmp_path: Path) -> None:
    import os

    storage = tmp_path / "storage"
    (storage / "stub" / "bucket").mkdir(parents=True)
    obj = storage / "stub" / "bucket" / "photo.png"
    obj.write_bytes(b"\x89PNG...")
    os.setxattr(obj, "user.supabase.content-type", b"image/png")
    os.chown(obj, 4321, 4321)
    os.chown(storage / "stub", 4321, 4321)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    dataset._copy_tree(storage, copy_dir / "storage")
    # The org's tree changes after the copy (an upgrade that failed wrote or removed files).
    obj.unlink()
    (storage / "stub" / "bucket" / "new.txt").write_text("written by the failed release")
    copy = dataset.Copy(copy_dir, [], {}, 17, storage=True)
    dataset.restore_storage(copy, storage)
    back = storage / "stub" / "bucket" / "photo.png"
    assert back.read_bytes() == b"\x89PNG..." and os.getxattr(back, "user.supabase.content-type") == b"image/png"
    assert (back.stat().st_uid, (storage / "stub").stat().st_uid) == (4321, 4321)
    assert not (storage / "stub" / "bucket" / "new.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "storage"]  # nothing left beside it
