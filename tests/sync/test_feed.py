"""The page feed (``sync.feed``): pages fetched and normalized in child processes, a window
each, one page ahead of the sync (or a few, when the child stages them itself), over the
simulator on loopback."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.windows import Scope, daily_window
from resources.polyai_api import CursorRejectedError
from resources.warehouse import WindowKey
from simulator import SimulatorServer
from sync.feed import FedPage, PageFeed, WindowFetch
from sync.window import WindowSyncResult
from tests.conftest import SYNC_DAY, Serve, client_for

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)
LOADED_AT = datetime(2026, 11, 23, 12, tzinfo=UTC)


def fetch_of(server: SimulatorServer, cursor: str | None = None) -> WindowFetch:
    key = WindowKey(server.config.account_id, server.config.project_id, LIVE_VOICE, WINDOW)
    return WindowFetch(key, "load-1", 1, cursor, LOADED_AT, WindowSyncResult(LIVE_VOICE, WINDOW))


def all_pages(feed: PageFeed, fetch: WindowFetch) -> list[FedPage]:
    feed.submit(fetch)
    pages = []
    while (fed := feed.next()).page is not None:
        pages.append(fed)
    return pages


def test_a_child_feeds_the_same_pages_and_batches_as_the_sync_process(
    simulator: SimulatorServer,
) -> None:
    client = client_for(simulator, page_size=40)
    with PageFeed(client, lanes=1) as feed:
        in_child = all_pages(feed, child_fetch := fetch_of(simulator))
        assert feed._children[0].pid != os.getpid()
    with PageFeed(client, lanes=0) as feed:
        here = all_pages(feed, here_fetch := fetch_of(simulator))
    assert len(in_child) == len(here) >= 5
    assert [p.page for p in in_child] == [p.page for p in here]
    for a, b in zip(in_child, here, strict=True):
        assert a.batch is not None and b.batch is not None
        assert a.batch.tables.keys() == b.batch.tables.keys()
        for name in a.batch.tables:
            assert a.batch.tables[name].equals(b.batch.tables[name]), name
        assert a.batch.large_value_bytes == b.batch.large_value_bytes
    assert in_child[-1].page is not None and in_child[-1].page.next_cursor is None
    # the requests the child made are counted in the sync's result
    assert child_fetch.result.requests.requests == here_fetch.result.requests.requests == len(here)


def test_the_child_fetches_one_page_ahead_and_no_more(serve: Serve) -> None:
    server = serve(faults={"latency_ms": 50})
    with PageFeed(client_for(server, page_size=20), lanes=1) as feed:
        feed.submit(fetch_of(server))
        before = len(server.recent_paths)
        for taken in range(1, 5):
            assert feed.next().page is not None
            time.sleep(0.5)  # the sync stages the page: the child has time to run ahead
            assert len(server.recent_paths) - before == taken + 1


def test_an_error_in_the_child_is_raised_as_itself_and_the_next_window_still_loads(
    simulator: SimulatorServer,
) -> None:
    with PageFeed(client_for(simulator, page_size=40), lanes=1) as feed:
        feed.submit(fetch_of(simulator, cursor="not-a-cursor-the-api-gave"))
        with pytest.raises(CursorRejectedError) as raised:
            feed.next()
        assert raised.value.status == 400 and raised.value.detail
        assert len(all_pages(feed, fetch_of(simulator))) >= 5


CHILD_OF_A_KILLED_SYNC = """
import sys, time
from sync.feed import PageFeed
from tests.conftest import client_for
from simulator import SimulatorConfig, SimulatorServer

with SimulatorServer(SimulatorConfig()) as server:
    with PageFeed(client_for(server), lanes=2) as feed:
        print(*(child.pid for child in feed._children), flush=True)
        time.sleep(600)
"""


@pytest.mark.e2e
def test_the_child_ends_when_the_sync_is_killed() -> None:
    sync = subprocess.Popen(
        [sys.executable, "-c", CHILD_OF_A_KILLED_SYNC],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        children = [int(pid) for pid in sync.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(children) == 2
        os.kill(sync.pid, signal.SIGKILL)
        sync.wait(10)
        deadline = time.monotonic() + 10
        # Each lane's child holds none of the sync's pipe ends, the other lane's included.
        while any(_alive(child) for child in children):
            assert time.monotonic() < deadline, "a feed's child outlived the killed sync"
            time.sleep(0.05)
    finally:
        sync.kill()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return status != "Z"  # a zombie has ended (its parent, killed, did not reap it)


def test_with_no_workers_the_sync_forks_no_child(
    simulator: SimulatorServer, duckdb_warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``POLYAI_SYNC_WORKERS=0``: the pages are fetched and normalized in the sync's process."""
    import multiprocessing

    from sync.window import sync_windows

    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError("a child process was started")

    monkeypatch.setattr(multiprocessing.get_context("fork"), "Process", no_fork)
    client = client_for(simulator, page_size=100)
    (result,) = sync_windows(client, duckdb_warehouse, [(LIVE_VOICE, WINDOW)], workers=0)
    assert result.rows["conversations"] == 364 and result.pages == 4


def test_a_child_that_stages_pages_itself_runs_ahead_a_few_pages_and_no_more(
    serve: Serve, duckdb_warehouse
) -> None:
    from resources.warehouse import WindowLoad
    from sync.feed import AHEAD_PAGES

    server = serve(faults={"latency_ms": 20})
    fetch = fetch_of(server)
    duckdb_warehouse.ensure_schema()
    WindowLoad(duckdb_warehouse, fetch.key, fetch.load_id).begin()

    def stage(key, load_id, page, batch, next_cursor):  # what sync_windows gives DuckDB
        return WindowLoad(duckdb_warehouse, key, load_id).stage_rows(page, batch, next_cursor)

    with PageFeed(client_for(server, page_size=10), lanes=1, stage_rows=stage) as feed:
        feed.submit(fetch)
        deadline = time.monotonic() + 10
        while len(server.recent_paths) < AHEAD_PAGES and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # nothing taken: the child stops AHEAD_PAGES ahead
        assert len(server.recent_paths) == AHEAD_PAGES
        fed = feed.next()
        assert fed.page is not None and fed.batch is not None
        assert fed.batch.staged_conversations == fed.page.conversations == 10
        assert fed.batch.tables == {}  # the rows are on disk, not in the pipe
        time.sleep(0.5)
        assert len(server.recent_paths) == AHEAD_PAGES + 1
    staged = duckdb_warehouse.staging
    assert [int(page.name) for page in sorted((staged.root / fetch.load_id).iterdir())] == list(
        range(1, AHEAD_PAGES + 2)
    )


def test_with_two_workers_two_windows_are_fetched_at_once_and_land_the_same(
    serve: Serve, tmp_path: Path
) -> None:
    from resources.warehouse import warehouse_for
    from sync.window import sync_windows

    server = serve(faults={"latency_ms": 100})
    windows = [(LIVE_VOICE, daily_window(SYNC_DAY)), (Scope("live", "chat"), WINDOW)]
    landed = {}
    for workers in (0, 2):
        warehouse = warehouse_for(f"duckdb:///{tmp_path / f'w{workers}.duckdb'}")
        before = len(server.recent_paths)
        results = list(
            sync_windows(client_for(server, page_size=40), warehouse, windows, workers=workers)
        )
        assert [(r.scope, r.window) for r in results] == windows  # published in order
        paths = server.recent_paths[before:]
        chat = [i for i, path in enumerate(paths) if "chat" in path]
        voice = [i for i, path in enumerate(paths) if "voice" in path]
        interleaved = chat[0] < voice[-1]
        assert interleaved == (workers == 2), paths
        landed[workers] = warehouse.read_table("conversations").sort_values("id")["id"].tolist()
    assert landed[0] == landed[2] and len(landed[0]) > 100


def test_a_window_that_cannot_begin_fails_in_its_turn_after_the_windows_before_it(
    simulator: SimulatorServer, duckdb_warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a lane per window, later windows begin early; a failure to begin one is still
    that window's, raised once the windows before it are synced."""
    import sync.window as window_sync
    from resources.warehouse import WarehouseBusyError

    begin = window_sync._start
    chat = Scope("live", "chat")

    def failing_for_chat(client, warehouse, feed, log, scope, window, *args, **kwargs):
        if scope == chat:
            raise WarehouseBusyError("the file is locked (test)")
        return begin(client, warehouse, feed, log, scope, window, *args, **kwargs)

    monkeypatch.setattr(window_sync, "_start", failing_for_chat)
    windows = [(LIVE_VOICE, WINDOW), (chat, WINDOW), (Scope("live", "sms"), WINDOW)]
    results = window_sync.sync_windows(
        client_for(simulator, page_size=100), duckdb_warehouse, windows, workers=2
    )
    first = next(results)
    assert (first.scope, first.rows["conversations"]) == (LIVE_VOICE, 364)
    with pytest.raises(WarehouseBusyError, match="locked"):
        next(results)
