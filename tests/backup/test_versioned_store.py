"""A versioned bucket with Object Lock (moto's S3 server): backups land, prune hides old sets
behind delete markers while the locked versions stay, and the older-store checksum mode works."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from installer.backup import api, s3
from installer.backup.config import ObjectStore, Retention

from .conftest import SECRETS, SIGNING_KEY, TRUST, make_settings
from .support import PgCluster, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def moto_store() -> Iterator[ObjectStore]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = ObjectStore(bucket="locked", prefix="sfp", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                        path_style=True, credentials="vault", access_key_id="testing", secret_access_key="testing")
    cli = s3.client(store)
    cli.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    cli.put_object_lock_configuration(Bucket="locked", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    yield store
    server.stop()


def test_backup_and_prune_on_locked_versioned_bucket(moto_store: ObjectStore, source_cluster: PgCluster,
                                                     recovery_key: tuple[str, str]) -> None:
    identity, recipient = recovery_key
    first = api.run_backup(make_settings(moto_store, recipient), "acme", source_cluster.database(), storage_dir=None,
                           org_config={}, secrets=SECRETS, signing_key=SIGNING_KEY)
    older = dataclasses.replace(moto_store, checksum_mode="when_required")
    second = api.run_backup(make_settings(older, recipient), "acme", source_cluster.database(), storage_dir=None,
                            org_config={}, secrets=SECRETS, signing_key=SIGNING_KEY)
    assert api.verify_set(moto_store, "acme", second.set_id, identity, trust=TRUST).ok
    assert [s.set_id for s in api.list_sets(moto_store, "acme")] == [first.set_id, second.set_id]

    report = api.prune(moto_store, "acme", Retention(0, 0, 0, 0))
    assert report.deleted == [first.set_id]
    assert [s.set_id for s in api.list_sets(moto_store, "acme")] == [second.set_id]
    # The locked versions of the pruned set are still there (immutable until retention ends).
    cli = s3.client(moto_store)
    versions = cli.list_object_versions(Bucket="locked", Prefix=f"sfp/acme/{first.set_id}/")
    assert versions.get("Versions") and versions.get("DeleteMarkers")
