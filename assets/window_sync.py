"""Sync one (scope, window): page through the API, normalize, stage, publish.

Plain Python over the two resources, with no Dagster in it, so the same code runs under a
Dagster asset, a test or a benchmark. One page is in flight at a time: memory is bounded by
the page size, not by the window.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.normalize import normalize_page
from core.windows import Scope, Window
from resources.polyai_api import CursorRejectedError, Page, PolyAIClient, RequestStats
from resources.warehouse import DuckDBWarehouse

MAX_WINDOW_RESTARTS = 3
"""A window whose cursor the API rejects is restarted from its first page, this many times at
most: more than that means the API keeps invalidating cursors and a human should look."""

_log = logging.getLogger(__name__)


@dataclass
class WindowSyncResult:
    scope: Scope
    window: Window
    load_id: str = ""
    pages: int = 0
    conversations_fetched: int = 0
    restarts: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """Rows the window holds in each table after publishing."""
    requests: RequestStats = field(default_factory=RequestStats)


def sync_window(
    client: PolyAIClient,
    warehouse: DuckDBWarehouse,
    scope: Scope,
    window: Window,
    on_page: Callable[[Page], None] | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> WindowSyncResult:
    """Replace the warehouse's copy of ``scope`` over ``window`` with what the API holds now."""
    log = log or _log
    result = WindowSyncResult(scope, window)
    warehouse.ensure_schema()
    while True:
        result.load_id = uuid.uuid4().hex
        try:
            _load(client, warehouse, result, on_page)
            result.rows = warehouse.publish(result.load_id, scope, window).rows
            return result
        except CursorRejectedError as exc:
            warehouse.discard(result.load_id)
            if result.restarts >= MAX_WINDOW_RESTARTS:
                raise
            result.restarts += 1
            log.warning(
                f"{scope.key} {window.start:%Y-%m-%d}: the API rejected a cursor ({exc.detail}); "
                f"restarting the window from its first page "
                f"(restart {result.restarts} of {MAX_WINDOW_RESTARTS})"
            )
        except BaseException:
            warehouse.discard(result.load_id)
            raise


def _load(
    client: PolyAIClient,
    warehouse: DuckDBWarehouse,
    result: WindowSyncResult,
    on_page: Callable[[Page], None] | None,
) -> None:
    loaded_at = datetime.now(UTC)
    result.pages = result.conversations_fetched = 0
    for page in client.iter_window(result.scope, result.window, stats=result.requests):
        batch = normalize_page(page.conversations, load_id=result.load_id, loaded_at=loaded_at)
        warehouse.stage(result.load_id, page.number, batch)
        result.pages += 1
        result.conversations_fetched += len(page.conversations)
        if on_page is not None:
            on_page(page)
