"""The window sync under faults: nothing lost, nothing twice."""

import logging

import pytest

from assets.window_sync import MAX_WINDOW_RESTARTS, sync_window
from core.windows import Scope, daily_window
from resources.polyai_api import CursorRejectedError
from resources.warehouse import DuckDBWarehouse
from tests.conftest import SYNC_DAY, Serve, client_for

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)


def stored_ids(warehouse: DuckDBWarehouse) -> list[str]:
    return warehouse.read_table("conversations")["id"].tolist()


def test_a_20_percent_429_and_5xx_rate_still_lands_every_conversation_exactly_once(
    serve: Serve, warehouse: DuckDBWarehouse
) -> None:
    server = serve(conversations_per_day=2000, faults={"rate_429": 0.1, "rate_5xx": 0.1, "seed": 5})
    client = client_for(server, page_size=50, max_attempts=8)
    result = sync_window(client, warehouse, LIVE_VOICE, WINDOW)

    expected = [
        c["id"]
        for c in server.dataset.conversations_in("live", ["voice"], WINDOW.start, WINDOW.end)
    ]
    ids = stored_ids(warehouse)
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert result.pages > 30
    assert result.requests.retries == sum(server.faults.injected.values()) > 5
    assert result.requests.requests == result.pages + result.requests.retries


def test_a_rejected_cursor_restarts_the_window_with_a_warning(
    serve: Serve, warehouse: DuckDBWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(faults={"reject_cursor_rate": 0.08, "seed": 2})
    client = client_for(server, page_size=40)
    with caplog.at_level(logging.WARNING):
        result = sync_window(client, warehouse, LIVE_VOICE, WINDOW)
    assert 1 <= result.restarts <= MAX_WINDOW_RESTARTS
    assert "restarting the window from its first page" in caplog.text
    truth = list(server.dataset.conversations_in("live", ["voice"], WINDOW.start, WINDOW.end))
    assert sorted(stored_ids(warehouse)) == sorted(c["id"] for c in truth)
    with warehouse.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM polyai._stage_conversations").fetchone() == (0,)


def test_a_cursor_rejected_every_time_fails_after_bounded_restarts_and_keeps_the_old_window(
    serve: Serve, warehouse: DuckDBWarehouse
) -> None:
    good = serve()
    sync_window(client_for(good, page_size=40), warehouse, LIVE_VOICE, WINDOW)
    before = sorted(stored_ids(warehouse))

    bad = serve(faults={"reject_cursor_rate": 1.0})
    with pytest.raises(CursorRejectedError):
        sync_window(client_for(bad, page_size=40), warehouse, LIVE_VOICE, WINDOW)
    assert bad.requests == 2 * (MAX_WINDOW_RESTARTS + 1)  # first page + rejected second page
    assert sorted(stored_ids(warehouse)) == before
