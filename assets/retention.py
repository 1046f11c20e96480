"""The retention run as an asset: ``polyai/retention_removals``, materialized by the nightly
retention job when ``POLYAI_RETENTION_DAYS`` is set. Each materialization removes the windows
older than that from every table and the lake (:mod:`sync.retention`); its metadata says what
went, and the ``retention_removals`` table keeps it per window and table."""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from core.env import Env
from core.names import ANALYTICS_GROUP, OWNER, POOL
from resources.lake import ParquetLake
from resources.warehouse import Warehouse
from sync.retention import apply_retention

RETENTION = AssetKey(["polyai", "retention_removals"])


def retention_asset(days: int) -> AssetsDefinition:
    """The asset that removes windows older than ``days`` days."""

    @asset(
        key=RETENTION,
        group_name=ANALYTICS_GROUP,
        kinds={"duckdb", "parquet"},
        owners=[OWNER],
        pool=POOL,
        description=(
            f"{Env.POLYAI_RETENTION_DAYS}={days}: windows older than {days} days removed from "
            "every table, the quarantine, the QA samples, the saved-search matches and the "
            "lake; one row per window and table removed from."
        ),
    )
    def retention_removals(
        context: AssetExecutionContext, warehouse: Warehouse, lake: ParquetLake
    ) -> MaterializeResult:
        metadata = apply_retention(warehouse, lake, days)
        context.log.info(
            f"retention: windows before {metadata['cutoff']} removed: "
            f"{metadata['windows_removed']} windows, {metadata['rows_conversations']} "
            f"conversations, {metadata['lake_files_removed']} lake files"
        )
        return MaterializeResult(
            metadata={**metadata, "cutoff": MetadataValue.text(str(metadata["cutoff"]))}
        )

    return retention_removals
