"""Sync one (scope, window): page through the API, normalize, stage, publish.

Plain Python over the two resources, with no Dagster in it, so the same code runs under a
Dagster asset, a test or a benchmark. One page is in flight at a time: memory is bounded by
the page size, not by the window.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.normalize import normalize_page
from core.windows import Scope, Window
from resources.polyai_api import Page, PolyAIClient, RequestStats
from resources.warehouse import DuckDBWarehouse


@dataclass
class WindowSyncResult:
    scope: Scope
    window: Window
    load_id: str
    pages: int = 0
    conversations_fetched: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """Rows the window holds in each table after publishing."""
    requests: RequestStats = field(default_factory=RequestStats)


def sync_window(
    client: PolyAIClient,
    warehouse: DuckDBWarehouse,
    scope: Scope,
    window: Window,
    on_page: Callable[[Page], None] | None = None,
) -> WindowSyncResult:
    """Replace the warehouse's copy of ``scope`` over ``window`` with what the API holds now."""
    load_id = uuid.uuid4().hex
    loaded_at = datetime.now(UTC)
    result = WindowSyncResult(scope, window, load_id)
    warehouse.ensure_schema()
    try:
        for page in client.iter_window(scope, window, stats=result.requests):
            batch = normalize_page(page.conversations, load_id=load_id, loaded_at=loaded_at)
            warehouse.stage(load_id, page.number, batch)
            result.pages += 1
            result.conversations_fetched += len(page.conversations)
            if on_page is not None:
                on_page(page)
        result.rows = warehouse.publish(load_id, scope, window).rows
    except BaseException:
        warehouse.discard(load_id)
        raise
    return result
