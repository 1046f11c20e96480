"""Analytics assets: KPI tables downstream of the window tables, on the same partitions.

They are materialized by the sync's step, right after each window lands, so a lookback
re-sync recomputes exactly the windows it touched and nothing else. Selected on their own (a
KPI query changed), they are recomputed from the warehouse without calling the API.
"""

from collections.abc import Iterator

from dagster import AssetMaterialization, AssetSpec, FreshnessPolicy

from assets.analytics_sql import kpi_queries
from assets.keys import (
    CONVERSATIONS,
    KPI_KEYS,
    LAKE,
    TURN_GENAI,
    TURN_LATENCY,
    TURNS,
    analytics_spec,
)
from core.windows import Scope, Window
from resources.lake import ParquetLake
from resources.warehouse import Warehouse

_SOURCES = {
    "conversation_kpis": (CONVERSATIONS, TURNS),
    "latency_kpis": (TURNS, TURN_LATENCY),
    "genai_kpis": (TURN_GENAI,),
}
_DESCRIPTIONS = {
    "conversation_kpis": (
        "Per window, scope and variant: conversations, finished and in progress, containment "
        "rate, hand-offs by reason and destination, duration mean/p50/p95, turns per "
        "conversation, silence and out-of-domain rates."
    ),
    "latency_kpis": "Per window and scope: turn latency p50/p90/p95/p99, overall and per stage.",
    "genai_kpis": (
        "Per window, scope and model: turns, input and output tokens, time to first token "
        "p50/p95, tool calls."
    ),
}


def kpi_specs(freshness_policy: FreshnessPolicy | None) -> list[AssetSpec]:
    return [
        analytics_spec(
            key, {"duckdb", "sql"}, _DESCRIPTIONS[table], _SOURCES[table], freshness_policy, table
        )
        for table, key in KPI_KEYS.items()
    ]


def lake_spec(freshness_policy: FreshnessPolicy | None) -> AssetSpec:
    return analytics_spec(
        LAKE,
        {"parquet"},
        "The window tables as Parquet in hive folders <table>/environment=/channel=/date=, "
        "under LAKE_URL; one file per window and table, replaced atomically.",
        (CONVERSATIONS, TURNS, TURN_LATENCY, TURN_GENAI),
        freshness_policy,
    )


def export_to_lake(
    lake: ParquetLake, warehouse: Warehouse, scope: Scope, window: Window, partition: str
) -> AssetMaterialization:
    """Write one window's files to the lake; the materialization lists rows per table."""
    rows = lake.export_window(warehouse, scope, window)
    return AssetMaterialization(
        asset_key=LAKE,
        partition=partition,
        metadata={
            "folder": str(lake.window_file("conversations", scope, window).parent),
            "dagster/row_count": rows["conversations"],
            **{f"rows_{table}": count for table, count in rows.items()},
        },
    )


def recompute_kpis(
    warehouse: Warehouse, scope: Scope, window: Window, partition: str
) -> Iterator[AssetMaterialization]:
    """Recompute every KPI table for one window; one materialization per table."""
    rows = warehouse.recompute_kpis(scope, window, kpi_queries(warehouse.json))
    for table, asset_key in KPI_KEYS.items():
        yield AssetMaterialization(
            asset_key=asset_key,
            partition=partition,
            metadata={
                "environment": scope.environment,
                "channel": scope.channel,
                "window_start": window.start.isoformat(),
                "dagster/row_count": rows[table],
            },
        )
