"""Sync one (scope, window): page through the API, normalize, stage, publish.

Plain Python over the two resources, with no Dagster in it, so the same code runs under a
Dagster asset, a test or a benchmark. One page is in flight at a time: memory is bounded by
the page size, not by the window.

Every page is committed with the cursor after it (``sync_state``), so a run that dies at any
point resumes where the last commit left it: it re-requests at most the page that was in
flight. A window whose pages are all staged but not yet published is published without
calling the API again. A cursor the API rejects restarts the window from its first page.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.env import DEFAULTS, Env
from core.errors import PolyAISyncError
from core.normalize import normalize_page
from core.windows import Scope, Window
from resources.polyai_api import CursorRejectedError, Page, PolyAIClient, RequestStats
from resources.warehouse import (
    Collision,
    SyncState,
    Warehouse,
    WarehouseError,
    WindowKey,
    WindowLoad,
    read_state,
)

MAX_WINDOW_RESTARTS = 3
"""A window whose cursor the API rejects is restarted from its first page, this many times at
most: more than that means the API keeps invalidating cursors and a human should look."""

DEFAULT_MAX_QUARANTINED_FRACTION = float(DEFAULTS[Env.POLYAI_QUARANTINE_MAX_FRACTION])

_log = logging.getLogger(__name__)


class QuarantineThresholdError(PolyAISyncError, RuntimeError):
    """More of a window's records failed validation than the configured share allows."""


@dataclass
class WindowSyncResult:
    scope: Scope
    window: Window
    load_id: str = ""
    pages: int = 0
    """Pages requested and committed by this run."""
    resumed_from_page: int | None = None
    """The first page this run requested, when it resumed an interrupted load."""
    conversations_fetched: int = 0
    restarts: int = 0
    quarantined: int = 0
    in_progress: int = 0
    type_issues: Counter[str] = field(default_factory=Counter)
    rows: dict[str, int] = field(default_factory=dict)
    """Rows the window holds in each table after publishing."""
    replaced: int = 0
    """Conversations the window held before publishing."""
    collisions: tuple[Collision, ...] = ()
    """Conversations this load brought that another window holds: set aside, not loaded."""

    @property
    def shrank(self) -> bool:
        """Whether the window now holds fewer than half the conversations it held before
        (loaded: the API may really hold fewer; reported, as that is rarely why)."""
        return 2 * self.rows.get("conversations", 0) < self.replaced

    requests: RequestStats = field(default_factory=RequestStats)


def sync_window(
    client: PolyAIClient,
    warehouse: Warehouse,
    scope: Scope,
    window: Window,
    on_page: Callable[[Page], None] | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
) -> WindowSyncResult:
    """Make the warehouse's copy of ``scope`` over ``window`` what the API holds now."""
    with warehouse.holding(), _without_cycle_collection():
        return _sync(
            client, warehouse, scope, window, on_page, log or _log, max_quarantined_fraction
        )


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while pages are parsed and normalized: a page makes
    hundreds of thousands of small acyclic objects (freed by reference counting alone), and
    the collector's passes over them cost as much as parsing the page (measured: orjson
    parsing a 9.5 MB page, 95 ms with it on, 49 ms off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _sync(
    client: PolyAIClient,
    warehouse: Warehouse,
    scope: Scope,
    window: Window,
    on_page: Callable[[Page], None] | None,
    log: logging.Logger | logging.LoggerAdapter,
    max_quarantined_fraction: float,
) -> WindowSyncResult:
    key = WindowKey(client.account_id, client.project_id, scope, window)
    result = WindowSyncResult(scope, window)
    warehouse.ensure_schema()
    state = read_state(warehouse, key)
    while True:
        try:
            result.load_id, next_page, cursor = _starting_point(warehouse, key, state, result)
            if next_page is not None:
                _load(client, warehouse, key, result, next_page, cursor, on_page)
            final = read_state(warehouse, key)
            if final is None or final.status != "staged" or final.load_id != result.load_id:
                raise WarehouseError(
                    f"{scope.key} {window.start:%Y-%m-%d}: load {result.load_id} finished "
                    f"paging but the window's state is {final}; another sync may have taken "
                    "it over. Run it again."
                )
            _check_quarantine(final, result, max_quarantined_fraction)
            published = WindowLoad(warehouse, key, result.load_id).publish()
            result.rows, result.replaced = published.rows, published.replaced
            result.collisions = published.collisions
            _report(result, log)
            return result
        except CursorRejectedError as exc:
            if result.restarts >= MAX_WINDOW_RESTARTS:
                WindowLoad(warehouse, key, result.load_id).discard()
                raise
            result.restarts += 1
            state = None
            log.warning(
                f"{scope.key} {window.start:%Y-%m-%d}: the API rejected a cursor ({exc.detail}); "
                f"restarting the window from its first page "
                f"(restart {result.restarts} of {MAX_WINDOW_RESTARTS})"
            )


def _starting_point(
    warehouse: Warehouse, key: WindowKey, state: SyncState | None, result: WindowSyncResult
) -> tuple[str, int | None, str | None]:
    """(load id, next page number or None when all are staged, cursor to resume at)."""
    if state is not None and state.status == "staged":
        result.resumed_from_page = state.pages + 1
        return state.load_id, None, None
    if state is not None and state.status == "running" and state.cursor is not None:
        result.resumed_from_page = state.pages + 1
        return state.load_id, state.pages + 1, state.cursor
    load_id = uuid.uuid4().hex
    WindowLoad(warehouse, key, load_id).begin()
    return load_id, 1, None


def _load(
    client: PolyAIClient,
    warehouse: Warehouse,
    key: WindowKey,
    result: WindowSyncResult,
    first_page: int,
    cursor: str | None,
    on_page: Callable[[Page], None] | None,
) -> None:
    loaded_at = datetime.now(UTC)
    load = WindowLoad(warehouse, key, result.load_id)
    pages = client.iter_window(key.scope, key.window, stats=result.requests, start_cursor=cursor)
    for offset, page in enumerate(pages):
        number = first_page + offset
        batch = normalize_page(
            page.conversations, load_id=result.load_id, loaded_at=loaded_at, scope=key.scope
        )
        load.stage(number, batch, page.next_cursor)
        result.pages += 1
        result.conversations_fetched += len(page.conversations)
        result.type_issues.update(batch.type_issues)
        if on_page is not None:
            on_page(page)
        del page, batch  # one page in memory at a time: freed before the next is fetched


def _check_quarantine(state: SyncState, result: WindowSyncResult, max_fraction: float) -> None:
    result.quarantined = state.quarantined
    result.in_progress = state.in_progress
    seen = state.conversations + state.quarantined
    if seen and state.quarantined / seen > max_fraction:
        raise QuarantineThresholdError(
            f"{result.scope.key} {result.window.start:%Y-%m-%d}: {state.quarantined} of {seen} "
            f"records failed validation, more than the allowed {max_fraction:.1%}; they are in "
            f"the quarantine table under load_id {state.load_id}. The window was not published; "
            f"re-run after fixing the source or raising {Env.POLYAI_QUARANTINE_MAX_FRACTION}."
        )


def _report(result: WindowSyncResult, log: logging.Logger | logging.LoggerAdapter) -> None:
    """Warn of what a published window's numbers alone would not show."""
    where = f"{result.scope.key} {result.window.start:%Y-%m-%d}"
    if result.collisions:
        shown = ", ".join(
            f"{c.conversation_id} (held by {c.held_by})" for c in result.collisions[:5]
        )
        more = len(result.collisions) - 5
        log.warning(
            f"{where}: {len(result.collisions)} conversation(s) the API served for this "
            f"window are already held by another window or scope: {shown}"
            + (f" and {more} more" if more > 0 else "")
            + "; each stays with that window, this load's copy is in the quarantine table "
            f"(load_id {result.load_id}, reason 'collision: ...')"
        )
    if result.shrank:
        log.warning(
            f"{where}: the window held {result.replaced} conversations and now holds "
            f"{result.rows['conversations']}: the API served far fewer than before"
        )
