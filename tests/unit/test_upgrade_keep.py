"""`upgrade --rollback` and `--finish` only while the last upgrade's pre-upgrade state is kept."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from installer.actions import upgrade as upgrade_action
from installer.errors import SfpError


class FakeCtx:
    name = "acme"
    settings: ClassVar[dict[str, Any]] = {"upgrade": {"keep_days": 3}}

    def command(self, *args: str) -> str:
        return "sfp-server " + " ".join(args)


UP = {"action": "upgrade", "from": "v0.8.0", "to": "v0.8.1", "backup_set": "S1", "keep_until": "2999-01-01T00:00:00Z"}


def test_the_last_upgrade_can_be_rolled_back_while_kept() -> None:
    assert upgrade_action._last_upgrade(FakeCtx(), [UP]) is not None  # type: ignore[arg-type]
    # An entry from before keep_until was recorded: still offered (its set is up to the retention).
    old = {k: v for k, v in UP.items() if k != "keep_until"}
    assert upgrade_action._last_upgrade(FakeCtx(), [old])["backup_set"] == "S1"  # type: ignore[arg-type]


@pytest.mark.parametrize(("history", "says"), [
    ([], "no upgrade to roll back"),
    ([UP, {"action": "rollback", "to": "v0.8.0"}], "rolled back already"),
    ([UP, {"action": "finish", "to": "v0.8.1"}], "it was finished"),
    ([{**UP, "keep_until": "2001-01-01T00:00:00Z"}], "kept until 2001-01-01T00:00:00Z"),
])
def test_no_rollback_after_finish_expiry_or_rollback(history: list[dict[str, Any]], says: str) -> None:
    with pytest.raises(SfpError, match=says):
        upgrade_action._last_upgrade(FakeCtx(), history)  # type: ignore[arg-type]


def test_keep_until_follows_the_setting() -> None:
    until = upgrade_action.keep_until(FakeCtx())  # type: ignore[arg-type]
    assert until > upgrade_action._now() and until.endswith("Z") and len(until) == 20
