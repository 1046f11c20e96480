"""The DuckDB warehouse: schema creation, staging and atomic window replacement."""

import subprocess
import sys
import time
from datetime import UTC, date, datetime

from core import schema
from core.normalize import normalize_page
from core.windows import Scope, daily_window
from resources.warehouse import DuckDBWarehouse

LIVE_VOICE = Scope("live", "voice")
DAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def record(cid: str, started_at: str, turns: int = 2, **extra: object) -> dict:
    return {
        "id": cid,
        "environment": "live",
        "channel": "voice",
        "started_at": started_at,
        "turns": [{"user_input": f"u{i}", "agent_response": f"a{i}"} for i in range(turns)],
        **extra,
    }


def load(warehouse: DuckDBWarehouse, load_id: str, *pages: list[dict], day: date = DAY) -> dict:
    warehouse.ensure_schema()
    for number, page in enumerate(pages, start=1):
        warehouse.stage(load_id, number, normalize_page(page, load_id=load_id, loaded_at=NOW))
    return warehouse.publish(load_id, LIVE_VOICE, daily_window(day)).rows


def test_schema_is_created_with_keys_and_utc_timestamps(warehouse: DuckDBWarehouse) -> None:
    warehouse.ensure_schema()
    warehouse.ensure_schema()  # idempotent
    with warehouse.connect(read_only=True) as con:
        columns = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'polyai' AND table_name = 'turns'"
            ).fetchall()
        )
        constraints = con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE schema_name = 'polyai' AND constraint_type = 'PRIMARY KEY' ORDER BY 1"
        ).fetchall()
    assert set(columns) == {c.name for c in schema.turns.columns}
    assert columns["user_input_datetime"] == "TIMESTAMP WITH TIME ZONE"
    assert constraints == [("conversations", ["id"]), ("turns", ["conversation_id", "turn_index"])]


def test_publish_replaces_the_window_and_keeps_other_windows(
    warehouse: DuckDBWarehouse,
) -> None:
    load(warehouse, "other-day", [record("C-prev", "2026-11-19T10:00:00Z")], day=date(2026, 11, 19))
    first = load(
        warehouse,
        "L1",
        [record("C1", "2026-11-20T01:00:00Z"), record("C2", "2026-11-20T02:00:00Z", turns=3)],
        [record("C3", "2026-11-20T23:59:59Z")],
    )
    assert first == {"conversations": 3, "turns": 7}
    # Re-sync: C2 changed (fewer turns), C3 is gone from the source.
    second = load(
        warehouse,
        "L2",
        [record("C1", "2026-11-20T01:00:00Z"), record("C2", "2026-11-20T02:00:00Z", turns=1)],
    )
    assert second == {"conversations": 2, "turns": 3}
    conversations = warehouse.read_table("conversations").set_index("id")
    assert sorted(conversations.index) == ["C-prev", "C1", "C2"]
    assert conversations.loc["C1", "load_id"] == "L2"
    turns = warehouse.read_table("turns", where="conversation_id = 'C2'")
    assert turns["turn_index"].tolist() == [0]


def test_a_conversation_served_twice_is_kept_once_with_its_latest_copy(
    warehouse: DuckDBWarehouse,
) -> None:
    rows = load(
        warehouse,
        "L1",
        [record("C1", "2026-11-20T01:00:00Z", in_progress=True, turns=1)],
        [record("C1", "2026-11-20T01:00:00Z", in_progress=False, turns=4)],
    )
    assert rows == {"conversations": 1, "turns": 4}
    (in_progress,) = warehouse.read_table("conversations")["in_progress"].tolist()
    assert in_progress is False


def test_publish_clears_the_staging_tables(warehouse: DuckDBWarehouse) -> None:
    load(warehouse, "L1", [record("C1", "2026-11-20T01:00:00Z")])
    with warehouse.connect(read_only=True) as con:
        staged = con.execute("SELECT count(*) FROM polyai._stage_conversations").fetchone()[0]
    assert staged == 0


def test_writer_waits_for_another_process_lock_instead_of_failing(
    warehouse: DuckDBWarehouse,
) -> None:
    warehouse.ensure_schema()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(1.5)",
            str(warehouse.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        rows = load(warehouse, "L1", [record("C1", "2026-11-20T01:00:00Z")])
        assert rows["conversations"] == 1
        assert time.monotonic() - started > 0.3  # it really waited for the lock
    finally:
        holder.wait(timeout=10)
