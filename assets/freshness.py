"""Is every scope up to date? A check on the sync's state table, run hourly.

Dagster's freshness policy says when a table was last materialized at all; this check says
which *scope* fell behind: a scope whose newest published window is older than the nightly
run should have made it.

It reads ``sync_state``, the table in which every window sync records its cursor and status.
That table is declared as an external asset (the sync step writes it as a side effect of
publishing windows; it has no partitions) and the check is on it, not on a window table: a
check on ``polyai/conversations`` would be planned, and skipped, in every sync run, since a
run plans every check of the assets it materializes.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetSpec,
    MetadataValue,
    asset_check,
)

from assets.keys import SYNC_STATE, column_schema
from core.names import FRESHNESS_CHECK as CHECK_NAME
from core.names import GROUP, OWNER
from core.windows import Scope, expected_newest_day
from resources.warehouse import Warehouse
from resources.warehouse.state import newest_synced_days

SYNC_STATE_SPEC = AssetSpec(
    SYNC_STATE,
    group_name=GROUP,
    kinds={"duckdb"},
    owners=[OWNER],
    description=(
        "The sync's bookkeeping: per account, project, scope and window, the last committed "
        "page cursor, pages and rows so far, and status (running, staged, complete). Written "
        "by the sync step as it stages and publishes windows; carries the scope freshness "
        "check."
    ),
    metadata={"dagster/column_schema": column_schema("sync_state")},
)


def build_freshness_check(scopes: Sequence[Scope], schedule_hour: int) -> AssetChecksDefinition:
    @asset_check(
        asset=SYNC_STATE,
        name=CHECK_NAME,
        description=(
            "Every configured scope has published the newest window the nightly run should "
            "have synced by now."
        ),
    )
    def every_scope_is_fresh(warehouse: Warehouse) -> AssetCheckResult:
        expected = expected_newest_day(datetime.now(UTC), schedule_hour)
        newest = newest_synced_days(warehouse)
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
