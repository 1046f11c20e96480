"""The sync asset: one partition = one (day, scope) window of conversations and their turns.

Both tables are written by one step because one API query yields both; each is its own
asset so the graph and the partitions view show what exists.
"""

from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    multi_asset,
)

from assets.window_sync import sync_window
from core.windows import Scope, daily_window
from resources.polyai_api import Page, PolyAIClient
from resources.warehouse import DuckDBWarehouse

DATE_DIMENSION = "date"
SCOPE_DIMENSION = "scope"
GROUP = "polyai"
CONVERSATIONS = AssetKey(["polyai", "conversations"])
TURNS = AssetKey(["polyai", "turns"])


def build_sync_asset(partitions_def: MultiPartitionsDefinition) -> AssetsDefinition:
    """The sync asset over the given (date x scope) partitions."""

    @multi_asset(
        name="polyai_conversations_sync",
        partitions_def=partitions_def,
        specs=[
            AssetSpec(
                CONVERSATIONS,
                group_name=GROUP,
                kinds={"duckdb", "python"},
                description="One row per PolyAI conversation, replaced window by window.",
            ),
            AssetSpec(
                TURNS,
                group_name=GROUP,
                kinds={"duckdb", "python"},
                description="One row per turn, keyed by (conversation_id, turn_index).",
            ),
        ],
    )
    def polyai_conversations_sync(
        context: AssetExecutionContext, polyai: PolyAIClient, warehouse: DuckDBWarehouse
    ):
        key = context.partition_key
        if not isinstance(key, MultiPartitionKey):
            raise TypeError(f"expected a date|scope partition key, got {key!r}")
        dims = key.keys_by_dimension
        scope = Scope.parse(dims[SCOPE_DIMENSION])
        window = daily_window(date.fromisoformat(dims[DATE_DIMENSION]))

        def log_page(page: Page) -> None:
            context.log.debug(f"page {page.number}: {len(page.conversations)} conversations")

        result = sync_window(polyai, warehouse, scope, window, on_page=log_page, log=context.log)
        context.log.info(
            f"{scope.key} {window.start:%Y-%m-%d}: {result.rows['conversations']} conversations, "
            f"{result.rows['turns']} turns in {result.pages} pages"
        )
        common = {
            "environment": scope.environment,
            "channel": scope.channel,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "pages": result.pages,
            "api_requests": result.requests.requests,
            "api_retries": result.requests.retries,
            "api_wait_seconds": round(result.requests.wait_seconds, 3),
            "window_restarts": result.restarts,
            "load_id": result.load_id,
        }
        yield MaterializeResult(
            asset_key=CONVERSATIONS,
            metadata={**common, "dagster/row_count": result.rows["conversations"]},
        )
        yield MaterializeResult(
            asset_key=TURNS, metadata={**common, "dagster/row_count": result.rows["turns"]}
        )

    return polyai_conversations_sync
