"""Windows fetched side by side: as many requests in flight as ``POLYAI_MAX_IN_FLIGHT`` allows,
never more, counted by the server; a storm of 429s cuts the limit and every window still lands
exactly."""

import os
from datetime import timedelta

import pytest

from core.windows import Scope, daily_window
from resources.polyai_errors import PolyAIError
from resources.warehouse.duckdb_engine import DuckDBWarehouse
from simulator import SimulatorServer
from sync.window import sync_windows
from tests.conftest import SYNC_DAY, Serve, client_for

LIVE_VOICE = Scope("live", "voice")
WINDOWS = [(LIVE_VOICE, daily_window(SYNC_DAY - timedelta(days=n))) for n in range(8)]

pytestmark = pytest.mark.skipif(
    (os.cpu_count() or 1) == 1, reason="a one-core machine fetches in the writer's process"
)


def served(server: SimulatorServer) -> list[int]:
    """How many conversations the server holds in each of :data:`WINDOWS`."""
    return [
        sum(1 for _ in server.dataset.conversations_in("live", ["voice"], w.start, w.end))
        for _, w in WINDOWS
    ]


@pytest.mark.parametrize("maximum", [1, 4])
def test_windows_are_fetched_side_by_side_up_to_the_maximum_in_flight(
    serve: Serve, duckdb_warehouse: DuckDBWarehouse, maximum: int
) -> None:
    server = serve(faults={"latency_ms": 150})
    client = client_for(server, page_size=1000, max_in_flight=maximum)
    results = list(sync_windows(client, duckdb_warehouse, WINDOWS))
    assert [r.rows["conversations"] for r in results] == served(server)
    assert all(r.pages == 1 for r in results)
    assert server.requests == len(WINDOWS)
    # Counted by the server: one page a window, as many windows at once as allowed.
    assert min(maximum, 3) <= server.peak_in_flight <= maximum


def test_a_429_storm_cuts_the_limit_and_every_window_lands_exactly(
    serve: Serve, duckdb_warehouse: DuckDBWarehouse
) -> None:
    server = serve(faults={"latency_ms": 50, "rate_429": 0.3, "seed": 7})
    client = client_for(server, page_size=1000, max_in_flight=8, max_attempts=8)
    pace = client.pace
    pace.start_report()
    results = list(sync_windows(client, duckdb_warehouse, WINDOWS))
    assert [r.rows["conversations"] for r in results] == served(server)
    report = pace.report()
    throttled = sum(r.requests.statuses.get(429, 0) for r in results)
    assert throttled > 0, "the storm never hit"
    assert report.cuts >= 1 and report.lowest <= 4
    assert server.peak_in_flight <= 8
    # Every request is a window's first try or one of its retries: none beyond the budget.
    assert server.requests == sum(r.requests.requests for r in results)
    assert all(r.requests.requests <= 8 for r in results)


class CountingTurn:
    """A one-slot semaphore that counts, and fails on a second holder."""

    def __init__(self) -> None:
        self.held = 0
        self.acquired = 0

    def acquire(self) -> bool:
        assert self.held == 0, "taken twice"
        self.held, self.acquired = 1, self.acquired + 1
        return True

    def release(self) -> None:
        assert self.held == 1, "given back twice"
        self.held = 0


def test_a_page_is_parsed_in_its_turn_which_the_consumer_gives_back(serve: Serve) -> None:
    client = client_for(serve(), page_size=20)
    turn = CountingTurn()
    pages = 0
    for _page in client.iter_window(*WINDOWS[0], turn=turn):
        assert turn.held == 1  # the consumer holds it while it works on the page
        pages += 1
        turn.release()
    assert pages >= 2 and turn.acquired == pages and turn.held == 0


def test_a_body_that_cannot_be_parsed_gives_the_turn_back_at_every_try(serve: Serve) -> None:
    client = client_for(serve(faults={"non_json_rate": 1.0}), max_attempts=3)
    turn = CountingTurn()
    with pytest.raises(PolyAIError):
        next(client.iter_window(*WINDOWS[0], turn=turn))
    assert turn.acquired == 3 and turn.held == 0
