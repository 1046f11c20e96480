"""A sync process killed with SIGKILL resumes from its last committed page and ends with
exactly the tables an uninterrupted sync writes; on DuckDB and on PostgreSQL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from core.windows import Scope, daily_window
from devtools import postgres
from resources.warehouse import warehouse_for
from simulator import SimulatorServer
from sync.feed import AHEAD_PAGES
from tests.assets.warehouse_reads import committed_pages, table_contents
from tests.conftest import ENGINES, SYNC_DAY, Serve, client_for

pytestmark = pytest.mark.e2e

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)
PAGE_SIZE = 40

CHILD = """
import sys
from datetime import date
from sync.window import sync_window
from core.windows import Scope, daily_window
from resources.polyai_api import PolyAIClient
from resources.warehouse import warehouse_for

base_url, key, account, project, url, day, page_size, scope = sys.argv[1:]
client = PolyAIClient(base_url=base_url, api_key=key, account_id=account, project_id=project,
                      page_size=int(page_size))
warehouse = warehouse_for(url)
result = sync_window(client, warehouse, Scope.parse(scope), daily_window(date.fromisoformat(day)))
print("resumed_from_page", result.resumed_from_page, "pages", result.pages, flush=True)
"""


@pytest.fixture(params=ENGINES)
def new_warehouse_url(request: pytest.FixtureRequest, tmp_path: Path):
    """Makes URLs of new, empty warehouses of one engine (a test runs once per engine)."""
    if request.param == "duckdb":
        return lambda name: f"duckdb:///{tmp_path / name}.duckdb"
    server = request.getfixturevalue("postgres_server")
    return lambda name: postgres.new_database(server)


def start_child(server: SimulatorServer, url: str, scope: str = "live.voice") -> subprocess.Popen:
    c = server.config
    args = [server.base_url, c.api_key, c.account_id, c.project_id, url]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args, SYNC_DAY.isoformat(), str(PAGE_SIZE), scope],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def requested_positions(server: SimulatorServer) -> list[str]:
    """The cursor of every request the simulator received ('' for a first page)."""
    return [parse_qs(urlsplit(path).query).get("cursor", [""])[0] for path in server.recent_paths]


def test_killed_syncs_resume_and_match_an_uninterrupted_run(
    serve: Serve, new_warehouse_url
) -> None:
    reference = serve(faults={"latency_ms": 0})
    baseline = warehouse_for(new_warehouse_url("baseline"))
    from sync.window import sync_window

    sync_window(client_for(reference, page_size=PAGE_SIZE), baseline, LIVE_VOICE, WINDOW)
    expected = table_contents(baseline.url)
    total_pages = -(-len(expected["conversations"]) // PAGE_SIZE)
    assert total_pages >= 7

    server = serve(faults={"latency_ms": 250})  # slow pages: room to kill between commits
    path = new_warehouse_url("killed")
    # Killed once the API has served the window's first 2, 4, then 6 pages (watched at the
    # API: a reader would wait for the writer to let the DuckDB file go).
    kills = (2, 4, 6)
    for k in kills:
        child = start_child(server, path)
        deadline = time.monotonic() + 60
        while len(set(requested_positions(server))) < k:
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL

    committed = committed_pages(path)  # exact now: no writer runs
    assert 1 <= committed < total_pages  # killed mid-window, after it committed pages
    final = start_child(server, path)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    resumed = int(out.split()[1])
    in_files = not warehouse_for(path).staging.in_transaction
    if in_files:  # pages the feed staged ahead of the killed writer are committed, not fetched
        assert committed + 1 <= resumed <= committed + 1 + AHEAD_PAGES
    else:
        assert resumed == committed + 1

    assert table_contents(path) == expected
    positions = requested_positions(server)
    repeats = len(positions) - len(set(positions))
    assert len(set(positions)) == total_pages
    # Per kill, the page being fetched; with staging tables also the one being staged.
    assert repeats <= (1 if in_files else 2) * len(kills)


def test_readers_get_in_between_commits_and_two_writers_both_finish(
    serve: Serve, new_warehouse_url
) -> None:
    server = serve(faults={"latency_ms": 150})
    path = new_warehouse_url("shared")
    voice = start_child(server, path, "live.voice")
    chat = start_child(server, path, "live.chat")
    reads = 0
    while voice.poll() is None or chat.poll() is None:
        if committed_pages(path) >= 0:
            reads += 1
        time.sleep(0.05)
    assert voice.returncode == 0, voice.stderr.read()
    assert chat.returncode == 0, chat.stderr.read()
    assert reads >= 5  # a notebook or the DuckDB CLI is not locked out for the whole run
    stored = warehouse_for(path).read_table("conversations")
    truth = {
        channel: sum(
            1 for _ in server.dataset.conversations_in("live", [channel], WINDOW.start, WINDOW.end)
        )
        for channel in ("voice", "chat")
    }
    assert stored.groupby("channel").size().to_dict() == truth
    assert stored["id"].is_unique


WINDOWS_CHILD = """
import sys
from datetime import date, timedelta
from sync.window import sync_windows
from core.windows import Scope, daily_window
from resources.polyai_api import PolyAIClient
from resources.warehouse import warehouse_for

base_url, key, account, project, url, day, page_size, days, in_flight = sys.argv[1:]
client = PolyAIClient(base_url=base_url, api_key=key, account_id=account, project_id=project,
                      page_size=int(page_size), max_in_flight=int(in_flight))
last = date.fromisoformat(day)
windows = [(Scope("live", "voice"), daily_window(last - timedelta(days=n)))
           for n in range(int(days))]
for _ in sync_windows(client, warehouse_for(url), windows):
    pass
"""
DAYS, IN_FLIGHT = 4, 4


def start_windows_child(server: SimulatorServer, url: str) -> subprocess.Popen:
    c = server.config
    args = [server.base_url, c.api_key, c.account_id, c.project_id, url, SYNC_DAY.isoformat()]
    return subprocess.Popen(
        [sys.executable, "-c", WINDOWS_CHILD, *args, str(PAGE_SIZE), str(DAYS), str(IN_FLIGHT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_kill_with_windows_side_by_side_re_requests_at_most_the_pages_in_flight(
    serve: Serve, new_warehouse_url
) -> None:
    """Four windows fetched at once (``POLYAI_MAX_IN_FLIGHT`` 4): a kill loses at most the
    page each lane was fetching (and, with staging tables, the one it was staging)."""
    from datetime import timedelta

    from sync.window import sync_windows

    windows = [(LIVE_VOICE, daily_window(SYNC_DAY - timedelta(days=n))) for n in range(DAYS)]
    reference = serve(faults={"latency_ms": 0})
    baseline = warehouse_for(new_warehouse_url("baseline"))
    for _ in sync_windows(client_for(reference, page_size=PAGE_SIZE), baseline, windows):
        pass
    expected = table_contents(baseline.url)
    total_pages = sum(
        -(-sum(1 for _ in reference.dataset.conversations_in("live", ["voice"], w.start, w.end))
          // PAGE_SIZE)
        for _, w in windows
    )  # fmt: skip

    server = serve(faults={"latency_ms": 250})
    path = new_warehouse_url("killed")
    kills = (IN_FLIGHT + 2, 3 * IN_FLIGHT)  # distinct pages served before each kill
    for k in kills:
        child = start_windows_child(server, path)
        deadline = time.monotonic() + 60
        while len(set(server.recent_paths)) < k:
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert server.peak_in_flight <= IN_FLIGHT

    final = start_windows_child(server, path)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert table_contents(path) == expected
    paths = server.recent_paths
    assert len(set(paths)) == total_pages
    in_files = not warehouse_for(path).staging.in_transaction
    # Per kill, the page each lane was fetching; with staging tables also the one it staged.
    assert len(paths) - len(set(paths)) <= (1 if in_files else 2) * IN_FLIGHT * len(kills)
