"""The page feed (``sync.feed``): pages fetched and normalized in a child process, one page
ahead of the sync, over the simulator on loopback."""

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
    with PageFeed(client, in_child=True) as feed:
        in_child = all_pages(feed, child_fetch := fetch_of(simulator))
        assert feed._child is not None and feed._child.pid != os.getpid()
    with PageFeed(client, in_child=False) as feed:
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
    with PageFeed(client_for(server, page_size=20), in_child=True) as feed:
        feed.submit(fetch_of(server))
        before = len(server.recent_paths)
        for taken in range(1, 5):
            assert feed.next().page is not None
            time.sleep(0.5)  # the sync stages the page: the child has time to run ahead
            assert len(server.recent_paths) - before == taken + 1


def test_an_error_in_the_child_is_raised_as_itself_and_the_next_window_still_loads(
    simulator: SimulatorServer,
) -> None:
    with PageFeed(client_for(simulator, page_size=40), in_child=True) as feed:
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
    with PageFeed(client_for(server), in_child=True) as feed:
        print(feed._child.pid, flush=True)
        time.sleep(600)
"""


def test_the_child_ends_when_the_sync_is_killed() -> None:
    sync = subprocess.Popen(
        [sys.executable, "-c", CHILD_OF_A_KILLED_SYNC],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(sync.stdout.readline())  # type: ignore[union-attr]
        os.kill(sync.pid, signal.SIGKILL)
        sync.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the feed's child outlived the killed sync"
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
