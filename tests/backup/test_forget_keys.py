"""`backup prune` drops an earlier recovery key (kept by a rotation) only once no set needs it.

The manifests it reads for that are the bucket's, read without a signature check (the org's
signing key may be what is missing): a set whose manifest cannot be read says nothing of the key it
was made with, so then every earlier key stays and the prune names the set. Crafted manifests here
are what someone with write access to the bucket, or a damaged upload, leaves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from installer import backup_inventory as binv
from installer.actions import backup_run
from installer.actions import status as status_action
from installer.actions.backup_keys import forget_unused_recovery_keys
from installer.backup import Trust, api, generate_recovery_key, generate_signing_key, s3
from installer.backup.keys import check_signature, recipient_of
from installer.backup.manifest import MANIFEST, set_prefix
from installer.backup.retention import PruneReport
from installer.cli import cli
from installer.context import resolve
from installer.errors import SfpError
from installer.inventory import Inventory
from tests.conftest import org_config

from .conftest import ORG_CONFIG, SECRETS, SIGNING_KEY, make_settings
from .support import PgCluster, RcloneS3

pytestmark = pytest.mark.slow

DAMAGED = "20261203T100000.000000Z-0000-aaaaaa"
OTHER_ORG = "20261203T100001.000000Z-0000-bbbbbb"
TOO_DEEP = "20261203T100002.000000Z-0000-cccccc"


def _put(store: object, set_id: str, body: bytes) -> None:
    s3.client(store).put_object(Bucket=store.bucket, Key=set_prefix(store.prefix, "acme", set_id) + MANIFEST, Body=body)  # type: ignore[attr-defined]


def _delete_set(store: object, set_id: str) -> None:
    cli = s3.client(store)
    listed = cli.list_objects_v2(Bucket=store.bucket, Prefix=set_prefix(store.prefix, "acme", set_id))  # type: ignore[attr-defined]
    for obj in listed.get("Contents", []):
        cli.delete_object(Bucket=store.bucket, Key=obj["Key"])  # type: ignore[attr-defined]


def test_earlier_keys_go_only_when_every_manifest_is_read_and_none_needs_them(
        make_inventory: Callable[..., Path], s3_server: RcloneS3, source_cluster: PgCluster) -> None:
    store = s3_server.store("forget-keys")
    inv_path = make_inventory({"acme": org_config(18000, 15432, 16543)})
    ctx = resolve(Inventory(inv_path, inv_path / ".vault-pass"), "acme")
    old_identity, old_recipient = generate_recovery_key()
    new_identity, new_recipient = generate_recovery_key()
    # The vault after a rotation of the recovery key: the new key, and the old one kept.
    ctx.write_secrets({**ctx.secrets, binv.IDENTITY: new_identity, binv.RECIPIENT: new_recipient,
                       binv.PREVIOUS_IDENTITIES: old_identity})

    genuine = api.run_backup(make_settings(store, old_recipient), "acme", source_cluster.database(), storage_dir=None,
                             org_config=ORG_CONFIG, secrets={**SECRETS, binv.SIGNING_KEY: SIGNING_KEY},
                             signing_key=SIGNING_KEY)
    assert forget_unused_recovery_keys(ctx, store) == ([], {})  # the set made with the old key still needs it

    # Retention took that set; what is left cannot be read: not JSON, another org's, nested past the parser.
    body = s3.client(store).get_object(Bucket=store.bucket, Key=set_prefix(store.prefix, "acme", genuine.set_id) + MANIFEST)["Body"].read()
    _delete_set(store, genuine.set_id)
    _put(store, DAMAGED, b'{"format": 1, "recipient": "[bold red]age1')
    _put(store, OTHER_ORG, json.dumps({**json.loads(body), "org": "globex", "set_id": OTHER_ORG}).encode())
    _put(store, TOO_DEEP, b"[" * 200_000)
    assert [s.set_id for s in api.list_sets(store, "acme")] == [DAMAGED, OTHER_ORG, TOO_DEEP]

    forgotten, unreadable = forget_unused_recovery_keys(ctx, store)
    assert forgotten == [] and sorted(unreadable) == [DAMAGED, OTHER_ORG, TOO_DEEP], unreadable
    assert "not JSON" in unreadable[DAMAGED] and "not JSON" in unreadable[TOO_DEEP]
    assert "globex" in unreadable[OTHER_ORG] or "refused" in unreadable[OTHER_ORG]
    kept = resolve(Inventory(inv_path, inv_path / ".vault-pass"), "acme").secrets
    assert binv.previous_identities(kept) == [old_identity] and kept[binv.IDENTITY] == new_identity

    # Once the bucket holds only readable sets and none is encrypted to the old key, it goes.
    for set_id in (DAMAGED, OTHER_ORG, TOO_DEEP):
        _delete_set(store, set_id)
    api.run_backup(make_settings(store, new_recipient), "acme", source_cluster.database(), storage_dir=None,
                   org_config=ORG_CONFIG, secrets={**SECRETS, binv.SIGNING_KEY: SIGNING_KEY}, signing_key=SIGNING_KEY)
    assert forget_unused_recovery_keys(ctx, store) == ([recipient_of(old_identity)], {})
    after = resolve(Inventory(inv_path, inv_path / ".vault-pass"), "acme").secrets
    assert binv.PREVIOUS_IDENTITIES not in after
    assert (after[binv.IDENTITY], after[binv.RECIPIENT]) == (new_identity, new_recipient)
    assert recipient_of(old_identity) == old_recipient


def test_a_signature_nested_past_the_parser_is_a_forged_set_not_a_crash() -> None:
    """manifest.sig comes from the bucket too; it is parsed before any key is tried."""
    trust = Trust((generate_signing_key()[1],))
    with pytest.raises(SfpError, match="signature does not verify"):
        check_signature(b"{}", b"[" * 200_000, trust, org="acme", set_id=DAMAGED, bucket="b")


def test_prune_names_the_unreadable_set_as_text(make_inventory: Callable[..., Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's half: the set and why are printed as text (the reason can quote the bucket's bytes,
    which must not become terminal markup), with the command that shows the set."""
    inv = make_inventory({"acme": org_config(18000, 15432, 16543)})
    monkeypatch.setattr(status_action, "gather", lambda *_a, **_k: [SimpleNamespace(error=None, history=[])])
    why = "the manifest of it is not JSON [bold red]planted[/bold red]"
    monkeypatch.setattr(backup_run, "prune", lambda *_a, **_k: PruneReport(kept={}, deleted=[], dry_run=False,
                                                                           keys_kept_for={DAMAGED: why}))
    result = CliRunner().invoke(cli, ["-i", str(inv), "backup", "prune", "--org", "acme"])
    assert result.exit_code == 0, (result.output, result.exception)
    text = " ".join(result.stderr.split())
    assert f"set {DAMAGED} cannot be read: {why}" in text, text
    assert f"backup show --org acme {DAMAGED}" in text and "earlier recovery keys kept" in text
