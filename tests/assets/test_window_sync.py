"""The window sync under faults: nothing lost, nothing twice."""

import json
import logging
from datetime import timedelta

import pytest

from core.windows import Scope, daily_window
from resources.polyai_api import CursorRejectedError, PolyAIResponseError
from resources.warehouse import Warehouse
from sync.window import MAX_WINDOW_RESTARTS, QuarantineThresholdError, sync_window
from tests.conftest import SYNC_DAY, Serve, client_for
from tests.hostile.server import ACCOUNT, PROJECT, HostileAPI, json_reply, serving

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)


def stored_ids(warehouse: Warehouse) -> list[str]:
    return warehouse.read_table("conversations")["id"].tolist()


def test_a_20_percent_429_and_5xx_rate_still_lands_every_conversation_exactly_once(
    serve: Serve, warehouse: Warehouse
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
    serve: Serve, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
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
        assert warehouse.staging.rows(con, "conversations") == 0


def test_a_cursor_rejected_every_time_fails_after_bounded_restarts_and_keeps_the_old_window(
    serve: Serve, warehouse: Warehouse
) -> None:
    good = serve()
    sync_window(client_for(good, page_size=40), warehouse, LIVE_VOICE, WINDOW)
    before = sorted(stored_ids(warehouse))

    bad = serve(faults={"reject_cursor_rate": 1.0})
    with pytest.raises(CursorRejectedError):
        sync_window(client_for(bad, page_size=40), warehouse, LIVE_VOICE, WINDOW)
    assert bad.requests == 2 * (MAX_WINDOW_RESTARTS + 1)  # first page + rejected second page
    assert sorted(stored_ids(warehouse)) == before


def test_schema_drift_completes_keeps_unknown_fields_and_reports_changed_types(
    serve: Serve, warehouse: Warehouse
) -> None:
    server = serve(faults={"schema_drift": True})
    result = sync_window(client_for(server, page_size=100), warehouse, LIVE_VOICE, WINDOW)
    conversations = warehouse.read_table("conversations")
    assert len(conversations) == result.rows["conversations"] > 100
    raw = [json.loads(r) for r in conversations["raw"]]
    assert all(r["sentiment"] == {"score": 0.42, "label": "neutral"} for r in raw)
    assert all(
        json.loads(t)["sentiment"] == "neutral" for t in warehouse.read_table("turns")["raw"]
    )
    # num_turns arrived as a string: loaded as the integer it spells, and reported.
    assert (conversations["num_turns"] == [int(r["num_turns"]) for r in raw]).all()
    assert result.type_issues == {"conversations.num_turns": len(conversations)}


def test_malformed_records_are_quarantined_and_the_window_still_loads(
    serve: Serve, warehouse: Warehouse
) -> None:
    server = serve(faults={"malformed_record_rate": 0.05})
    result = sync_window(
        client_for(server, page_size=100),
        warehouse,
        LIVE_VOICE,
        WINDOW,
        max_quarantined_fraction=0.2,
    )
    truth = list(server.dataset.conversations_in("live", ["voice"], WINDOW.start, WINDOW.end))
    quarantine = warehouse.read_table("quarantine")
    assert result.quarantined == len(quarantine) > 0
    assert result.rows["conversations"] + result.quarantined == len(truth)
    assert set(quarantine["reason"]) == {
        "started_at: 'not-a-timestamp' is not an ISO 8601 timestamp"
    }
    assert all(json.loads(r)["started_at"] == "not-a-timestamp" for r in quarantine["raw"])
    loaded = set(warehouse.read_table("conversations")["id"])
    assert loaded.isdisjoint(quarantine["conversation_id"])
    assert loaded | set(quarantine["conversation_id"]) == {c["id"] for c in truth}


def test_too_many_quarantined_records_fail_the_run_and_leave_the_window_unpublished(
    serve: Serve, warehouse: Warehouse
) -> None:
    server = serve(faults={"malformed_record_rate": 0.05})
    with pytest.raises(QuarantineThresholdError, match="failed validation, more than"):
        sync_window(client_for(server, page_size=100), warehouse, LIVE_VOICE, WINDOW)
    assert len(warehouse.read_table("conversations")) == 0
    assert len(warehouse.read_table("quarantine")) > 0


def test_an_in_progress_conversation_that_finishes_is_updated_on_resync(
    serve: Serve, warehouse: Warehouse
) -> None:
    server = serve(conversations_per_day=3000, now=WINDOW.start + timedelta(hours=11))
    client = client_for(server, page_size=200)
    first = sync_window(client, warehouse, LIVE_VOICE, WINDOW)
    ongoing = warehouse.read_table("conversations", where="in_progress")
    assert first.in_progress == len(ongoing) > 0
    turns_before = len(warehouse.read_table("turns"))

    server.dataset.set_now(WINDOW.end + timedelta(hours=1))
    second = sync_window(client, warehouse, LIVE_VOICE, WINDOW)
    assert second.in_progress == 0
    after = warehouse.read_table("conversations").set_index("id")
    assert not after["in_progress"].any()
    for cid, before in ongoing.set_index("id").iterrows():
        assert after.loc[cid, "num_turns"] > before["num_turns"]
    turns = warehouse.read_table("turns")
    assert not turns.duplicated(["conversation_id", "turn_index"]).any()
    assert len(turns) > turns_before
    assert len(turns) == after["num_turns"].sum()


def test_a_200_carrying_an_error_fails_the_window_and_keeps_its_rows(
    serve: Serve, warehouse: Warehouse
) -> None:
    good = serve()
    sync_window(client_for(good, page_size=40), warehouse, LIVE_VOICE, WINDOW)
    before = sorted(stored_ids(warehouse))
    assert before

    # A server that is not the simulator: 200, an error, an empty page and no cursor. The
    # error text echoes the key, which must not reach the message.
    key = good.config.api_key
    body = {"error": f"backend unavailable for key {key}", "conversations": [], "cursor": None}
    api = HostileAPI()
    api.override = lambda query: json_reply(body)
    with serving(api) as url:
        client = client_for(good).model_copy(
            update={"base_url": url, "account_id": ACCOUNT, "project_id": PROJECT}
        )
        with pytest.raises(PolyAIResponseError) as failed:
            sync_window(client, warehouse, LIVE_VOICE, WINDOW)
    message = str(failed.value)
    assert "200 carrying an error: backend unavailable for key ***" in message
    assert key not in message
    assert sorted(stored_ids(warehouse)) == before  # not replaced by an empty window
