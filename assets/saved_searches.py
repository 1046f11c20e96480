"""Saved searches: configured transcript or semantic queries run over every window, their
matches (id, rank, the first turn containing the text) written to ``saved_search_matches``
so analysts can chart how often customers raise each topic."""

from collections.abc import Sequence
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, MultiPartitionsDefinition

from assets.analytics import window_asset
from assets.keys import CONVERSATIONS, SAVED_SEARCHES, analytics_spec
from core.config import SavedSearch
from core.windows import Scope, Window
from sync.saved_searches import run_saved_searches


def saved_search_asset(
    partitions_def: MultiPartitionsDefinition,
    windows_per_run: int,
    searches: Sequence[SavedSearch],
) -> AssetsDefinition:
    spec = analytics_spec(
        SAVED_SEARCHES,
        {"duckdb"},
        "Matches of the configured searches: "
        + "; ".join(f"{s.name} ({s.query_type}: {s.query!r})" for s in searches),
        (CONVERSATIONS,),
        table="saved_search_matches",
    )

    def compute(context: AssetExecutionContext, scope: Scope, window: Window) -> dict[str, Any]:
        resources = context.resources
        return run_saved_searches(resources.polyai, resources.warehouse, searches, scope, window)

    return window_asset(spec, partitions_def, windows_per_run, {"polyai"}, compute)
