"""The asset checks pass on what a sync wrote and fail on a deliberately broken warehouse."""

import pytest

from core.windows import Scope, daily_window
from resources.warehouse import Warehouse
from resources.warehouse.checks import CHECKS, run_checks
from sync.window import sync_window
from tests.conftest import SYNC_DAY, Serve, client_for

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)

# One way to break each rule, as the SQL someone might run against the warehouse by hand.
BREAKAGES = {
    "unique_conversation_ids": [
        "CREATE TABLE polyai.conv_copy AS SELECT * FROM polyai.conversations",
        "DROP TABLE polyai.conversations",
        "CREATE TABLE polyai.conversations AS SELECT * FROM polyai.conv_copy",
        "INSERT INTO polyai.conversations SELECT * FROM polyai.conv_copy LIMIT 1",
    ],
    "unique_turn_keys": [
        "CREATE TABLE polyai.turns_copy AS SELECT * FROM polyai.turns",
        "DROP TABLE polyai.turns",
        "CREATE TABLE polyai.turns AS SELECT * FROM polyai.turns_copy",
        "INSERT INTO polyai.turns SELECT * FROM polyai.turns_copy LIMIT 1",
    ],
    "turns_have_a_conversation": [
        "DELETE FROM polyai.conversations "
        "WHERE id = (SELECT min(conversation_id) FROM polyai.turns)"
    ],
    "num_turns_matches_turns_loaded": ["UPDATE polyai.conversations SET num_turns = num_turns + 1"],
    "transcripts_visible": [
        "DELETE FROM polyai.turns WHERE conversation_id = (SELECT min(id) FROM "
        "polyai.conversations WHERE num_turns > 0 AND NOT in_progress)"
    ],
    "turn_indexes_have_no_gaps": ["UPDATE polyai.turns SET turn_index = turn_index + 10"],
    "timestamps_inside_the_window": [
        "UPDATE polyai.conversations SET started_at = started_at - INTERVAL '3 days' "
        "WHERE id = (SELECT min(id) FROM polyai.conversations)"
    ],
    "latencies_non_negative": ["UPDATE polyai.turns SET latency_s = -0.5"],
    "unique_latency_keys": [
        "CREATE TABLE polyai.latency_copy AS SELECT * FROM polyai.turn_latency",
        "DROP TABLE polyai.turn_latency",
        "CREATE TABLE polyai.turn_latency AS SELECT * FROM polyai.latency_copy",
        "INSERT INTO polyai.turn_latency SELECT * FROM polyai.latency_copy LIMIT 1",
    ],
    "no_conversation_held_by_another_window": [
        "INSERT INTO polyai.quarantine SELECT $load, 0, 0, 'c-1', 'live', 'voice', $start, "
        "'collision: broken on purpose', '{}', now()"
    ],
    "resync_kept_most_conversations": [
        "UPDATE polyai.sync_state SET replaced_conversations = 1000000"
    ],
    "quarantine_under_threshold": [
        "INSERT INTO polyai.quarantine SELECT $load, 99, range, NULL, 'live', 'voice', "
        "$start, 'broken on purpose', '{}', now() FROM generate_series(1, 100) AS g(range)"
    ],
}


@pytest.fixture
def synced(serve: Serve, warehouse: Warehouse) -> str:
    server = serve(latency_breakdown=True)  # the stage table's checks need its rows
    result = sync_window(client_for(server, page_size=100), warehouse, LIVE_VOICE, WINDOW)
    return result.load_id


def check(warehouse: Warehouse, load_id: str) -> dict[str, int]:
    outcomes = run_checks(warehouse, LIVE_VOICE, WINDOW, load_id, 0.01)
    return {o.name: o.violations for o in outcomes}


def test_every_check_passes_after_a_sync(warehouse: Warehouse, synced: str) -> None:
    assert check(warehouse, synced) == dict.fromkeys((c.name for c in CHECKS), 0)


def test_every_check_has_a_breakage() -> None:
    assert set(BREAKAGES) == {c.name for c in CHECKS}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_each_check_fails_on_a_warehouse_broken_its_way(
    warehouse: Warehouse, synced: str, name: str
) -> None:
    with warehouse.connect() as con:
        for statement in BREAKAGES[name]:
            params = {"load": synced, "start": WINDOW.start}
            con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
    violations = check(warehouse, synced)
    assert violations[name] > 0, violations


def test_a_negative_latency_stage_fails_the_latency_check_too(
    warehouse: Warehouse, synced: str
) -> None:
    with warehouse.connect() as con:
        con.execute("UPDATE polyai.turn_latency SET latency_ms = -1")
    assert check(warehouse, synced)["latencies_non_negative"] > 0
