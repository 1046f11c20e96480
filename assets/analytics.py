"""Assets computed from the window tables, each its own step on the same (date x scope)
partitions: the lake (here), the QA sample and the saved-search matches (their own modules),
and the dbt project's models, the KPIs among them (:mod:`assets.dbt`).

They sit downstream of the tables in the graph and are brought up to date the Dagster way: a
sync job or a backfill of everything runs them in the same run, after the tables (they share
the sync's partitions and backfill policy, so Dagster groups them into its runs); when only the
tables were materialized (a backfill of ``polyai/conversations`` from the UI), their automation
condition requests exactly the windows whose tables changed, under the daemon. Selected on
their own they recompute from the warehouse; only the QA sample and the saved searches call
the API (sample and search modes, never the window's pages).
"""

from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    AutomationCondition,
    BackfillPolicy,
    FreshnessPolicy,
    MaterializeResult,
    MultiPartitionsDefinition,
    multi_asset,
)

from assets.keys import (
    CONVERSATIONS,
    LAKE,
    TURN_GENAI,
    TURN_LATENCY,
    TURNS,
    analytics_spec,
    window_of,
)
from core.env import Env
from core.names import POOL
from core.windows import Scope, Window
from resources.lake import ParquetLake
from resources.warehouse import Warehouse

WHEN_TABLES_CHANGE = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("any window whose tables changed")
"""Every partition (not only the latest, as ``eager()`` would) whose upstream tables were
materialized since this asset last was, once no run still works on it. A run that wrote both
(the sync job, a backfill of everything) leaves nothing to request."""

WindowCompute = Callable[[AssetExecutionContext, Scope, Window], Mapping[str, Any]]
"""One window's work for an asset: writes it, returns the materialization's metadata."""


def window_asset(
    spec: AssetSpec,
    partitions_def: MultiPartitionsDefinition,
    windows_per_run: int,
    resources: set[str],
    compute: WindowCompute,
) -> AssetsDefinition:
    """An asset computed window by window over the run's partitions (one, or a range): one
    materialization per window, its metadata what ``compute`` returned for it."""

    @multi_asset(
        name=spec.key.path[-1],
        specs=[spec.replace_attributes(automation_condition=WHEN_TABLES_CHANGE)],
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=windows_per_run),
        pool=POOL,
        required_resource_keys={"warehouse", *resources},
    )
    def compute_windows(context: AssetExecutionContext) -> MaterializeResult:
        warehouse: Warehouse = context.resources.warehouse
        with warehouse.holding():
            for _, scope, window, key in sorted(window_of(k) for k in context.partition_keys):
                metadata = compute(context, scope, window)
                context.add_asset_metadata(dict(metadata), partition_key=key)
        return MaterializeResult(asset_key=spec.key)

    return compute_windows


def lake_asset(
    partitions_def: MultiPartitionsDefinition,
    windows_per_run: int,
    freshness_policy: FreshnessPolicy | None,
) -> AssetsDefinition:
    spec = analytics_spec(
        LAKE,
        {"parquet"},
        "The window tables as Parquet in hive folders <table>/environment=/channel=/date=, "
        f"under {Env.LAKE_URL}; one file per window and table, replaced atomically.",
        (CONVERSATIONS, TURNS, TURN_LATENCY, TURN_GENAI),
        freshness_policy,
    )
    return window_asset(spec, partitions_def, windows_per_run, {"lake"}, export_to_lake)


def export_to_lake(context: AssetExecutionContext, scope: Scope, window: Window) -> dict[str, Any]:
    """Write one window's files to the lake; rows per table."""
    lake: ParquetLake = context.resources.lake
    rows = lake.export_window(context.resources.warehouse, scope, window)
    return {
        "lake": lake.display,
        "folder": lake.window_file("conversations", scope, window).rsplit("/", 1)[0],
        "dagster/row_count": rows["conversations"],
        **{f"rows_{table}": count for table, count in rows.items()},
    }
