"""Sync one (scope, window), or several in turn: page through the API, normalize, stage,
publish.

Plain Python over the two resources, with no Dagster in it, so the same code runs under a
Dagster asset, a test or a benchmark. Pages come from a :class:`sync.feed.PageFeed`: fetched,
normalized and (DuckDB) staged by child processes, a window each, while this process commits
each page and publishes the windows in order. Memory is bounded by a few pages, not by the
window.

Every page is committed with the cursor after it (``sync_state``), so a run that dies at any
point resumes where the last commit left it. It re-requests at most the page being fetched
(DuckDB: pages staged ahead of the commit are committed from their files,
:meth:`resources.warehouse.WindowLoad.commit_staged_ahead`), or that and the page being staged
(PostgreSQL). A window whose pages are all staged but not yet published is published without
calling the API. A cursor the API rejects restarts the window from its first page.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from core.errors import PolyAISyncError
from core.normalize import Batch
from core.windows import Scope, Window
from resources.polyai_api import CursorRejectedError, PolyAIClient
from resources.warehouse import (
    Warehouse,
    WarehouseError,
    WindowKey,
    WindowLoad,
    read_state,
    sweep_staged,
)
from sync.feed import PageFeed, PageInfo, StageRows, WindowFetch
from sync.results import (
    DEFAULT_MAX_QUARANTINED_FRACTION,
    QuarantineThresholdError,
    WindowFailure,
    WindowSyncResult,
    check_quarantine,
    fails_alone,
    keeps_walk,
    report,
)

__all__ = [
    "QuarantineThresholdError",
    "WindowFailure",
    "WindowSyncResult",
    "fails_alone",
    "sync_window",
    "sync_windows",
]

MAX_WINDOW_RESTARTS = 3
"""A window whose cursor the API rejects is restarted from its first page, this many times at
most: more than that means the API keeps invalidating cursors and a human should look."""

_log = logging.getLogger(__name__)

AHEAD = 3
"""Windows begun per lane: the one whose page is in flight and two waiting behind it, so that
a lane asks for its next window's page as soon as its last one arrives, while the writer
publishes (one window a lane: 12.2 s for 40 one-page windows at 1 s a page, 8 in flight;
three: 8.0 s, the latency-bound limit being 5 s). A window waiting holds no page."""


def sync_window(
    client: PolyAIClient,
    warehouse: Warehouse,
    scope: Scope,
    window: Window,
    on_page: Callable[[PageInfo], None] | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
) -> WindowSyncResult:
    """Make the warehouse's copy of ``scope`` over ``window`` what the API holds now."""
    windows = sync_windows(
        client, warehouse, [(scope, window)], on_page, log, max_quarantined_fraction
    )
    with contextlib.closing(windows):
        result = next(windows)
    assert isinstance(result, WindowSyncResult)  # a failure raises, without keep_going
    return result


def sync_windows(
    client: PolyAIClient,
    warehouse: Warehouse,
    windows: Sequence[tuple[Scope, Window]],
    on_page: Callable[[PageInfo], None] | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
    workers: int | None = None,
    keep_going: bool = False,
) -> Iterator[WindowSyncResult | WindowFailure]:
    """:func:`sync_window` for each of ``windows`` in order, each yielded once published. A
    window failing on its own (:func:`fails_alone`) is recorded as failed, and yielded as a
    :class:`WindowFailure` (``keep_going``) or raised; any other error raises at once.

    Pages are fetched by child processes, a window each, as many windows side by side as
    the client may have requests in flight (``POLYAI_MAX_IN_FLIGHT``), and normalized by
    ``workers`` of them at once (:mod:`sync.feed`; every core by default,
    ``POLYAI_SYNC_WORKERS`` caps them; 0, or a machine with one core, keeps all the work in
    this process), while this process commits pages and publishes windows in order.
    """
    log = log or _log
    lanes, normalizers = _lanes(client, len(windows), workers)
    with (
        warehouse.holding(),
        _without_cycle_collection(),
        PageFeed(
            client,
            lanes=lanes,
            stage_rows=None if warehouse.staging.in_transaction else _stage_rows(warehouse),
            normalizers=normalizers,
        ) as feed,
    ):
        warehouse.ensure_schema()
        sweep_staged(warehouse)
        upcoming = deque(windows)  # not begun yet
        begun: deque[WindowFetch[WindowSyncResult] | Exception] = deque()  # in order

        def begin_next() -> None:
            """Begin the next window's load. Its failure is raised when that window's turn
            comes, after the windows before it, and no window after it is begun."""
            if not upcoming:
                return
            try:
                begun.append(_start(client, warehouse, feed, log, *upcoming.popleft()))
            except Exception as exc:
                begun.append(exc)
                upcoming.clear()

        for scope, window in windows:
            while upcoming and len(begun) < max(1, AHEAD * lanes):
                begin_next()
            fetch = begun.popleft()
            if isinstance(fetch, Exception):
                raise fetch
            key = WindowKey(client.account_id, client.project_id, scope, window)
            assert fetch.key == key, f"began {fetch.key.describe()} before {key.describe()}"
            args = (client, warehouse, feed, fetch, _once(begin_next), on_page, log)
            finish = functools.partial(_finish, *args, max_quarantined_fraction)
            yield _attempt(finish, warehouse, fetch, log, keep_going)


def _lanes(client: PolyAIClient, windows: int, workers: int | None) -> tuple[int, int]:
    """Windows fetched side by side (a lane a window, as many as requests may be in flight),
    and lanes normalizing at once (the cores, or fewer); (0, 0): all in this process."""
    cores = os.cpu_count() or 1
    normalizers = 0 if cores == 1 else min(cores if workers is None else workers, cores)
    return (min(client.max_in_flight, windows) if normalizers else 0), normalizers


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, done the first time the result is called only: the window after those
    begun is begun when this one's last page arrives, its first page fetched meanwhile."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return once


def _stage_rows(warehouse: Warehouse) -> StageRows:
    """Stage a page's rows where it was normalized (a staging outside the warehouse's
    transactions: DuckDB's files), so that only its counts travel to this process."""

    def stage(
        key: WindowKey, load_id: str, page: int, batch: Batch, next_cursor: str | None
    ) -> Batch:
        return WindowLoad(warehouse, key, load_id).stage_rows(page, batch, next_cursor)

    return stage


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


def _start(
    client: PolyAIClient,
    warehouse: Warehouse,
    feed: PageFeed,
    log: logging.Logger | logging.LoggerAdapter,
    scope: Scope,
    window: Window,
    result: WindowSyncResult | None = None,
    first: bool = False,
) -> WindowFetch[WindowSyncResult]:
    """Where the window's load starts: resumed from its state, or begun afresh (always, on
    a restart, and when the staged pages are gone); the pages still to fetch are submitted to
    the feed (``first_page`` 0: every page is staged)."""
    key = WindowKey(client.account_id, client.project_id, scope, window)
    result = result or WindowSyncResult(scope, window)
    state = read_state(warehouse, key) if result.restarts == 0 else None
    if state is not None and state.status == "failed":
        if state.pages == 0:
            state = None  # nothing of the failed walk is kept: begin afresh
        else:
            WindowLoad(warehouse, key, state.load_id).resume()
            state = read_state(warehouse, key)
    if (
        state is not None
        and state.status in ("running", "staged")
        and not warehouse.staging.intact(state.load_id, state.pages, state.conversations)
    ):
        log.warning(
            f"{key.describe()}: the {state.pages} page(s) load {state.load_id} staged are no "
            "longer all there (or were staged by another version, with other columns); "
            "loading the window again from its first page"
        )
        state = None
    if state is not None and state.status == "running":
        load = WindowLoad(warehouse, key, state.load_id)
        # Pages the feed staged ahead of a writer that was stopped: committed, not refetched.
        if load.commit_staged_ahead(state.pages):
            state = read_state(warehouse, key)
    if state is not None and state.status == "staged":
        result.resumed_from_page = state.pages + 1
        result.load_id = state.load_id
        return WindowFetch(key, state.load_id, 0, None, datetime.now(UTC), result)
    if state is not None and state.status == "running" and state.cursor is not None:
        result.resumed_from_page = state.pages + 1
        fetch = WindowFetch(
            key, state.load_id, state.pages + 1, state.cursor, datetime.now(UTC), result
        )
    else:
        load_id = uuid.uuid4().hex
        WindowLoad(warehouse, key, load_id).begin()
        fetch = WindowFetch(key, load_id, 1, None, datetime.now(UTC), result)
    result.load_id = fetch.load_id
    feed.submit(fetch, first=first)
    return fetch


def _finish(
    client: PolyAIClient,
    warehouse: Warehouse,
    feed: PageFeed,
    fetch: WindowFetch[WindowSyncResult],
    start_next: Callable[[], None],
    on_page: Callable[[PageInfo], None] | None,
    log: logging.Logger | logging.LoggerAdapter,
    max_quarantined_fraction: float,
) -> WindowSyncResult:
    """Stage the window's pages as the feed brings them, then publish it."""
    key, result = fetch.key, fetch.result
    scope, window = key.scope, key.window
    while True:
        try:
            if fetch.first_page:
                _stage_pages(warehouse, feed, fetch, start_next, on_page)
            else:
                start_next()
            final = read_state(warehouse, key)
            if final is None or final.status != "staged" or final.load_id != result.load_id:
                raise WarehouseError(
                    f"{scope.key} {window.start:%Y-%m-%d}: load {result.load_id} finished "
                    f"paging but the window's state is {final}; another sync may have taken "
                    "it over. Run it again."
                )
            check_quarantine(final, result, max_quarantined_fraction)
            published = WindowLoad(warehouse, key, result.load_id).publish()
            result.rows, result.replaced = published.rows, published.replaced
            result.collisions = published.collisions
            report(result, log)
            return result
        except CursorRejectedError as exc:
            if result.restarts >= MAX_WINDOW_RESTARTS:
                raise
            result.restarts += 1
            log.warning(
                f"{scope.key} {window.start:%Y-%m-%d}: the API rejected a cursor ({exc.detail}); "
                f"restarting the window from its first page "
                f"(restart {result.restarts} of {MAX_WINDOW_RESTARTS})"
            )
            # The feed ended the window at the error and waits for the next: start it again.
            result.resumed_from_page = None
            fetch = _start(client, warehouse, feed, log, scope, window, result=result, first=True)


def _attempt(
    finish: Callable[[], WindowSyncResult],
    warehouse: Warehouse,
    fetch: WindowFetch[WindowSyncResult],
    log: logging.Logger | logging.LoggerAdapter,
    keep_going: bool,
) -> WindowSyncResult | WindowFailure:
    """The window finished (``finish``: :func:`_finish`), or, when it failed on its own,
    recorded as failed: returned with ``keep_going``, raised otherwise."""
    try:
        return finish()
    except Exception as exc:
        if not fails_alone(exc):
            if isinstance(exc, PolyAISyncError):  # it stops the sync; the walk stays good
                with contextlib.suppress(Exception):  # (the warehouse may be what failed)
                    WindowLoad(warehouse, fetch.key, fetch.load_id).fail(str(exc), True)
            raise
        failure = _failed(warehouse, fetch, exc, log)
        if not keep_going:
            raise
        return failure


def _failed(
    warehouse: Warehouse,
    fetch: WindowFetch[WindowSyncResult],
    error: Exception,
    log: logging.Logger | logging.LoggerAdapter,
) -> WindowFailure:
    """Record the window's failure in its state: its walk kept only when the error says
    nothing against the pages and cursor (:func:`sync.results.keeps_walk`)."""
    resumes = keeps_walk(error)
    state = read_state(warehouse, fetch.key) if resumes else None
    staged = state is not None and state.status == "staged"
    failure = WindowFailure(fetch.key.scope, fetch.key.window, error, fetch.result, resumes, staged)
    WindowLoad(warehouse, fetch.key, fetch.load_id).fail(failure.message, keep_walk=resumes)
    log.error(f"{fetch.key.describe()}: FAILED: {failure.message}")
    return failure


def _stage_pages(
    warehouse: Warehouse,
    feed: PageFeed,
    fetch: WindowFetch[WindowSyncResult],
    start_next: Callable[[], None],
    on_page: Callable[[PageInfo], None] | None,
) -> None:
    """Stage each page of the window the feed brings, committing the cursor after it."""
    load = WindowLoad(warehouse, fetch.key, fetch.load_id)
    result = fetch.result
    number = fetch.first_page
    while (fed := feed.next()).page is not None:
        page, batch = fed.page, fed.batch
        assert fed.fetch is fetch and batch is not None, "pages of another window"
        if page.next_cursor is None:
            # The window's last page: the next window's first is fetched while this one is
            # staged and the window published.
            start_next()
        load.stage(number, batch, page.next_cursor)
        result.pages += 1
        result.conversations_fetched += page.conversations
        result.type_issues.update(batch.type_issues)
        if on_page is not None:
            on_page(page)
        number += 1
        del page, batch, fed  # two pages in memory at most: this one and the next
    start_next()  # (a no-op when the last page, the one without a cursor, started it)
