"""Is every scope up to date? A check the UI shows on the conversations asset, run hourly.

Dagster's freshness policy says when a table was last materialized at all; this check says
which *scope* fell behind: a scope whose newest published window is older than the nightly
run should have made it.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from assets.keys import CONVERSATIONS
from core.windows import Scope, expected_newest_day
from resources.warehouse import Warehouse

CHECK_NAME = "every_scope_is_fresh"


def build_freshness_check(scopes: Sequence[Scope], schedule_hour: int) -> AssetChecksDefinition:
    @asset_check(
        asset=CONVERSATIONS,
        name=CHECK_NAME,
        description=(
            "Every configured scope has published the newest window the nightly run should "
            "have synced by now."
        ),
    )
    def every_scope_is_fresh(warehouse: Warehouse) -> AssetCheckResult:
        expected = expected_newest_day(datetime.now(UTC), schedule_hour)
        newest = warehouse.newest_synced_days()
        late = {
            scope.key: str(newest[scope]) if scope in newest else "never"
            for scope in scopes
            if newest.get(scope) is None or newest[scope] < expected
        }
        return AssetCheckResult(
            passed=not late,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"late: {', '.join(f'{k} (newest {v})' for k, v in late.items())}"
                if late
                else f"every scope has {expected}"
            ),
            metadata={
                "expected_newest_day": str(expected),
                "late_scopes": len(late),
                "newest_by_scope": MetadataValue.json(
                    {s.key: str(newest.get(s, "never")) for s in scopes}
                ),
            },
        )

    return every_scope_is_fresh
