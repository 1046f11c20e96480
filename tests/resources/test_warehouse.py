"""The warehouse on both engines (DuckDB, PostgreSQL): schema creation, staging and atomic
window replacement; and what only DuckDB has (a file and its lock)."""

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from core import schema
from core.normalize import normalize_page
from core.windows import Scope, daily_window
from resources.warehouse import Warehouse, WarehouseError, WindowKey, WindowLoad, read_state
from resources.warehouse.duckdb_engine import DuckDBWarehouse

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


def load(warehouse: Warehouse, load_id: str, *pages: list[dict], day: date = DAY) -> dict:
    """Stage ``pages`` as one load of the day's live.voice window, then publish it."""
    key = WindowKey("acct", "proj", LIVE_VOICE, daily_window(day))
    warehouse.ensure_schema()
    window_load = WindowLoad(warehouse, key, load_id)
    window_load.begin()
    for number, page in enumerate(pages, start=1):
        cursor = None if number == len(pages) else f"cursor-{number}"
        batch = normalize_page(page, load_id=load_id, loaded_at=NOW)
        window_load.stage(number, batch, cursor)
    return window_load.publish().rows


def test_schema_is_created_with_keys_and_utc_timestamps(warehouse: Warehouse) -> None:
    warehouse.ensure_schema()
    warehouse.ensure_schema()  # idempotent
    with warehouse.connect(read_only=True) as con:
        columns = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'polyai' AND table_name = 'turns'"
            ).fetchall()
        )
        key_columns = con.execute(
            "SELECT k.table_name, k.column_name FROM information_schema.table_constraints c "
            "JOIN information_schema.key_column_usage k "
            "ON k.constraint_name = c.constraint_name AND k.table_schema = c.table_schema "
            "AND k.table_name = c.table_name "
            "WHERE c.table_schema = 'polyai' AND c.constraint_type = 'PRIMARY KEY' "
            "ORDER BY k.table_name, k.ordinal_position"
        ).fetchall()
    constraints: dict[str, list[str]] = {}
    for table, column in key_columns:
        constraints.setdefault(table, []).append(column)
    assert set(columns) == {c.name for c in schema.turns.columns}
    assert columns["user_input_datetime"].upper() == "TIMESTAMP WITH TIME ZONE"
    # The per-turn tables' keys are enforced by PostgreSQL; in DuckDB their index cost more
    # than the rest of their load: their columns are still NOT NULL, and a check verifies
    # uniqueness.
    enforced_child_keys = (
        [] if isinstance(warehouse, DuckDBWarehouse) else [
            ("turn_genai", ["conversation_id", "turn_index"]),
            ("turn_latency", ["conversation_id", "turn_index", "stage"]),
            ("turns", ["conversation_id", "turn_index"]),
        ]
    )  # fmt: skip
    assert sorted(constraints.items()) == sorted([
        *enforced_child_keys,
        ("conversation_kpis", ["environment", "channel", "window_start", "variant_id"]),
        ("conversations", ["id"]),
        ("erasures", ["erasure_id"]),
        ("genai_kpis", ["environment", "channel", "window_start", "model"]),
        ("latency_kpis", ["environment", "channel", "window_start", "stage"]),
        ("qa_samples", ["environment", "channel", "window_start", "conversation_id"]),
        ("quarantine", ["load_id", "page", "position"]),
        (
            "retention_removals",
            ["removal_id", "environment", "channel", "window_start", "table_name"],
        ),
        (
            "saved_search_matches",
            ["environment", "channel", "window_start", "search", "conversation_id"],
        ),
        ("sync_state", ["account_id", "project_id", "environment", "channel", "window_start"]),
    ])  # fmt: skip
    with warehouse.connect(read_only=True) as con:
        nullable = dict(
            con.execute(
                "SELECT table_name || '.' || column_name, is_nullable "
                "FROM information_schema.columns WHERE table_schema = 'polyai'"
            ).fetchall()
        )
    for table in schema.CHILD_TABLES:
        for column in table.primary_key.columns:
            assert nullable[f"{table.name}.{column.name}"] == "NO"


def test_publish_replaces_the_window_and_keeps_other_windows(
    warehouse: Warehouse,
) -> None:
    load(warehouse, "other-day", [record("C-prev", "2026-11-19T10:00:00Z")], day=date(2026, 11, 19))
    first = load(
        warehouse,
        "L1",
        [record("C1", "2026-11-20T01:00:00Z"), record("C2", "2026-11-20T02:00:00Z", turns=3)],
        [record("C3", "2026-11-20T23:59:59Z")],
    )
    assert first == {"conversations": 3, "turns": 7, "turn_latency": 0, "turn_genai": 0}
    # Re-sync: C2 changed (fewer turns), C3 is gone from the source.
    second = load(
        warehouse,
        "L2",
        [record("C1", "2026-11-20T01:00:00Z"), record("C2", "2026-11-20T02:00:00Z", turns=1)],
    )
    assert second == {"conversations": 2, "turns": 3, "turn_latency": 0, "turn_genai": 0}
    conversations = warehouse.read_table("conversations").set_index("id")
    assert sorted(conversations.index) == ["C-prev", "C1", "C2"]
    assert conversations.loc["C1", "load_id"] == "L2"
    turns = warehouse.read_table("turns", where="conversation_id = 'C2'")
    assert turns["turn_index"].tolist() == [0]


def test_a_conversation_served_twice_is_kept_once_with_its_latest_copy(
    warehouse: Warehouse,
) -> None:
    rows = load(
        warehouse,
        "L1",
        [record("C1", "2026-11-20T01:00:00Z", in_progress=True, turns=1)],
        [record("C1", "2026-11-20T01:00:00Z", in_progress=False, turns=4)],
    )
    assert (rows["conversations"], rows["turns"]) == (1, 4)
    (in_progress,) = warehouse.read_table("conversations")["in_progress"].tolist()
    assert in_progress is False


def test_publish_clears_the_staging_tables(warehouse: Warehouse) -> None:
    load(warehouse, "L1", [record("C1", "2026-11-20T01:00:00Z")])
    with warehouse.connect(read_only=True) as con:
        staged = warehouse.staging.rows(con, "conversations")
    assert staged == 0


def test_writer_waits_for_another_process_lock_instead_of_failing(
    duckdb_warehouse: Warehouse,
) -> None:
    warehouse = duckdb_warehouse
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


def test_a_file_another_process_is_creating_is_waited_for_and_an_old_invalid_one_refused(
    tmp_path,
) -> None:
    # Another process has created the file and not yet written DuckDB's headers (two first
    # syncs on one new file race there); it finishes a moment later.
    path = tmp_path / "wh.duckdb"
    path.write_bytes(b"")
    ready = tmp_path / "ready.duckdb"
    duckdb.connect(str(ready)).close()
    finish = threading.Timer(0.5, lambda: os.replace(ready, path))
    finish.start()
    warehouse = DuckDBWarehouse(url=f"duckdb:///{path}")
    started = time.monotonic()
    try:
        warehouse.ensure_schema()
    finally:
        finish.join()
    assert time.monotonic() - started > 0.3  # it waited for the creator

    # A file that is not DuckDB's and nobody is writing: refused at once, naming it.
    stale = tmp_path / "notes.duckdb"
    stale.write_bytes(b"not a database")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    started = time.monotonic()
    with pytest.raises(WarehouseError, match=r"notes\.duckdb"):
        DuckDBWarehouse(url=f"duckdb:///{stale}").ensure_schema()
    assert time.monotonic() - started < 2


def test_sync_state_follows_the_load_and_quarantine_keeps_the_raw_record(
    warehouse: Warehouse,
) -> None:
    key = WindowKey("acct", "proj", LIVE_VOICE, daily_window(DAY))
    warehouse.ensure_schema()
    assert read_state(warehouse, key) is None
    l1 = WindowLoad(warehouse, key, "L1")
    l1.begin()
    page = [record("C1", "2026-11-20T01:00:00Z"), {"id": "C-bad", "started_at": "never"}]
    l1.stage(1, normalize_page(page, load_id="L1", loaded_at=NOW), "c-1")
    state = read_state(warehouse, key)
    assert (state.status, state.cursor, state.pages, state.conversations, state.quarantined) == (
        "running", "c-1", 1, 1, 1,
    )  # fmt: skip
    l1.stage(2, normalize_page([], load_id="L1", loaded_at=NOW), None)
    assert read_state(warehouse, key).status == "staged"
    l1.publish()
    assert read_state(warehouse, key).status == "complete"
    (bad,) = warehouse.read_table("quarantine").to_dict("records")
    assert (bad["load_id"], bad["page"], bad["position"]) == ("L1", 1, 1)
    assert bad["conversation_id"] == "C-bad" and "not an ISO 8601" in bad["reason"]
    assert json.loads(bad["raw"]) == page[1]


def test_a_stale_load_cannot_stage_into_a_window_another_load_took_over(
    warehouse: Warehouse,
) -> None:
    key = WindowKey("acct", "proj", LIVE_VOICE, daily_window(DAY))
    warehouse.ensure_schema()
    WindowLoad(warehouse, key, "old").begin()
    WindowLoad(warehouse, key, "new").begin()
    batch = normalize_page([record("C1", "2026-11-20T01:00:00Z")], load_id="old", loaded_at=NOW)
    with pytest.raises(WarehouseError, match="another sync of the same window"):
        WindowLoad(warehouse, key, "old").stage(1, batch, None)
    with warehouse.connect(read_only=True) as con:
        assert warehouse.staging.rows(con, "conversations") == 0


def test_a_column_added_by_a_later_version_is_migrated_in_place(
    warehouse: Warehouse,
) -> None:
    load(warehouse, "L1", [record("C1", "2026-11-20T01:00:00Z")])
    # An older version of the warehouse: these columns did not exist yet.
    with warehouse.connect() as con:
        con.execute("ALTER TABLE polyai.conversations DROP COLUMN handoff_destination")
        if warehouse.staging.in_transaction:  # staging tables (PostgreSQL's) migrate too
            con.execute("ALTER TABLE polyai._stage_conversations DROP COLUMN handoff_destination")
        con.execute("DROP TABLE polyai.turn_genai")
    warehouse.ensure_schema()
    with warehouse.connect(read_only=True) as con:
        assert con.execute(
            "SELECT id, handoff_destination FROM polyai.conversations"
        ).fetchall() == [("C1", None)]
        assert con.execute("SELECT count(*) FROM polyai.turn_genai").fetchone() == (0,)
    rows = load(warehouse, "L2", [record("C1", "2026-11-20T01:00:00Z", handoff_destination="x")])
    assert rows["conversations"] == 1
    assert warehouse.read_table("conversations")["handoff_destination"].tolist() == ["x"]


def test_rows_written_before_windows_held_them_are_given_the_window_they_started_in(
    warehouse: Warehouse,
) -> None:
    load(
        warehouse,
        "L1",
        [record("C1", "2026-11-20T01:00:00Z"), record("C2", "2026-11-20T02:00:00Z")],
    )
    load(warehouse, "L2", [record("D1", "2026-11-21T05:00:00Z")], day=date(2026, 11, 21))
    # A warehouse of the version before conversations carried window_start.
    with warehouse.connect() as con:
        con.execute("ALTER TABLE polyai.conversations DROP COLUMN window_start")
        if warehouse.staging.in_transaction:  # staging tables (PostgreSQL's) migrate too
            con.execute("ALTER TABLE polyai._stage_conversations DROP COLUMN window_start")
    warehouse.ensure_schema()
    owners = {
        row["id"]: row["window_start"].date()
        for row in warehouse.read_table("conversations").to_dict("records")
    }
    assert owners == {"C1": DAY, "C2": DAY, "D1": date(2026, 11, 21)}
    # Each window still replaces its own rows: C2 is gone, D1's window untouched.
    rows = load(warehouse, "L3", [record("C1", "2026-11-20T01:00:00Z")])
    assert rows["conversations"] == 1
    assert sorted(warehouse.read_table("conversations")["id"]) == ["C1", "D1"]


def test_a_warehouse_of_the_version_before_labels_and_float_latency_is_migrated(
    warehouse: Warehouse,
) -> None:
    turns = [
        {"user_input": "u", "latency": 0.873, "barge_in": True},
        {"user_input": "v", "latency": "slow"},
        {"user_input": "w", "latency": 873},  # the older simulator's milliseconds
    ]
    served = {**record("C1", "2026-11-20T01:00:00Z", turns=0, channel="VOICE-SIP"), "turns": turns}
    load(warehouse, "L1", [served])
    # The older version: no label column, and latency an integer column (its milliseconds).
    tables = ["conversations", "turns"]
    if warehouse.staging.in_transaction:  # staging tables (PostgreSQL's) migrate too
        tables += ["_stage_conversations", "_stage_turns"]
    with warehouse.connect() as con:
        for table in tables:
            columns = (
                ["channel_label"] if table.endswith("conversations") else ["latency_s", "barge_in"]
            )
            for column in columns:
                con.execute(f"ALTER TABLE polyai.{table} DROP COLUMN {column}")
        con.execute("ALTER TABLE polyai.turns ADD COLUMN latency INTEGER")
        con.execute("UPDATE polyai.turns SET latency = 873")
    warehouse.ensure_schema()
    (conversation,) = warehouse.read_table("conversations").to_dict("records")
    assert (conversation["channel"], conversation["channel_label"]) == ("voice", "VOICE-SIP")
    migrated = warehouse.read_table("turns").sort_values("turn_index")
    assert migrated["latency_s"].tolist()[0] == 0.873  # read from raw, as seconds
    assert migrated["latency_s"].isna().tolist()[1:] == [True, True]  # not seconds: null
    assert migrated["latency"].tolist() == [873, 873, 873]  # the old column stays as it was
    assert migrated["barge_in"].tolist()[0] is True and migrated["barge_in"].isna().tolist()[1]
    # The partition keys did not move: the same window is replaced by the next load.
    rows = load(warehouse, "L2", [record("C2", "2026-11-20T02:00:00Z", channel="VOICE-SIP")])
    assert rows["conversations"] == 1
    assert warehouse.read_table("conversations")["id"].tolist() == ["C2"]


# information_schema's name of each type the schema declares, per engine.
TYPE_NAMES = {
    "duckdb": {"VARCHAR": "VARCHAR", "INTEGER": "INTEGER", "BIGINT": "BIGINT", "BOOLEAN": "BOOLEAN",
               "DATE": "DATE", "JSON": "JSON", "VARCHAR[]": "VARCHAR[]",
               "DOUBLE PRECISION": "DOUBLE",
               "TIMESTAMP WITH TIME ZONE": "TIMESTAMP WITH TIME ZONE"},
    "postgresql": {"VARCHAR": "character varying", "INTEGER": "integer", "BIGINT": "bigint",
                   "BOOLEAN": "boolean",
                   "DATE": "date", "JSON": "json", "VARCHAR[]": "ARRAY",
                   "DOUBLE PRECISION": "double precision",
                   "TIMESTAMP WITH TIME ZONE": "timestamp with time zone"},
}  # fmt: skip


def test_every_column_has_the_type_the_schema_declares(warehouse: Warehouse) -> None:
    warehouse.ensure_schema()
    dialect = warehouse.dialect()
    names = TYPE_NAMES[warehouse.engine]
    with warehouse.connect(read_only=True) as con:
        for table in schema.metadata.sorted_tables:
            actual = dict(
                con.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'polyai' AND table_name = $t",
                    {"t": table.name},
                ).fetchall()
            )
            for column in table.columns:
                declared = column.type.compile(dialect=dialect)
                assert declared in names, (table.name, column.name, declared)
                assert actual[column.name] == names[declared], (table.name, column.name)


@pytest.mark.parametrize(
    ("file_name", "schema_name"),
    [("polyai.duckdb", "polyai"), ("team.warehouse.duckdb", 'odd "schema"; name')],
)
def test_a_schema_named_like_the_file_or_with_quotes_still_loads(
    tmp_path, file_name: str, schema_name: str
) -> None:
    """DuckDB names a file's catalog after the file: a schema of the same name made every
    two-part name ambiguous (found by the benchmark, whose file was polyai.duckdb)."""
    warehouse = DuckDBWarehouse(url=f"duckdb:///{tmp_path / file_name}", schema_name=schema_name)
    assert_loads_one_conversation(warehouse)


def test_a_postgresql_schema_with_quotes_semicolons_dollars_and_percents_loads(
    postgres_url: str,
) -> None:
    from resources.warehouse.postgres_engine import PostgresWarehouse

    name = 'odd "schema"; $env 100% ünïcode'
    assert_loads_one_conversation(PostgresWarehouse(url=postgres_url, schema_name=name))


def assert_loads_one_conversation(warehouse: Warehouse) -> None:
    rows = load(warehouse, "load-1", [record("c1", "2026-11-20T10:00:00Z")])
    assert rows["conversations"] == 1
    assert rows["turns"] == 2
    assert warehouse.read_table("turns")["conversation_id"].tolist() == ["c1", "c1"]


def test_holding_shares_one_connection_and_lets_it_go_on_failure_and_on_exit(
    warehouse: Warehouse,
) -> None:
    import duckdb
    import psycopg

    warehouse.ensure_schema()
    with warehouse.holding():
        with warehouse.connect() as first, warehouse.connect(read_only=True) as second:
            assert first is second  # one connection across operations
        with pytest.raises((duckdb.Error, psycopg.Error)), warehouse.connect() as failing:
            failing.execute("BEGIN")
            failing.execute("SELECT * FROM no_such_table")
        with warehouse.connect() as after:
            assert after is not failing  # the failed one was let go, its transaction with it
            after.execute("BEGIN")
            after.execute("COMMIT")
    if not isinstance(warehouse, DuckDBWarehouse):
        assert after.raw.closed  # let go on exit
        return
    # Let go on exit: another process opens the file at once.
    opened = subprocess.run(
        [sys.executable, "-c", f"import duckdb; duckdb.connect({str(warehouse.path)!r}).close()"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert opened.returncode == 0, opened.stderr


HOSTILE = [
    "'; DROP TABLE polyai.turns; --",
    'Robert"); DELETE FROM polyai.conversations; --',
    "$env %s %(load)s {s} ünïcödé ✓ 名前",
]


def test_values_with_quotes_semicolons_and_placeholders_are_only_ever_data(
    warehouse: Warehouse,
) -> None:
    from resources.dbt import rebuild_kpis
    from resources.warehouse.checks import run_checks

    records = [
        record(f"C{i}-{text}", f"2026-11-20T0{i}:00:00Z", variant_id=text, variant_name=text,
               handoff=True, handoff_reason=text, in_progress=False, num_turns=2)
        for i, text in enumerate(HOSTILE)
    ]  # fmt: skip
    rows = load(warehouse, "L-'quoted'", records)
    assert rows["conversations"] == len(HOSTILE) and rows["turns"] == 2 * len(HOSTILE)
    stored = warehouse.read_table("conversations").set_index("id")
    for i, text in enumerate(HOSTILE):
        assert stored.loc[f"C{i}-{text}", "variant_name"] == text  # round-trips exactly
    window = daily_window(DAY)
    rebuild_kpis(warehouse, [(LIVE_VOICE, window)])  # the dbt models, values bound as data
    by_variant = warehouse.read_table("conversation_kpis").set_index("variant_id")
    assert len(by_variant) == len(HOSTILE)  # one row per (hostile) variant
    for text in HOSTILE:
        assert json.loads(by_variant.loc[text, "handoffs_by_reason"]) == {text: 1}
    outcomes = run_checks(warehouse, LIVE_VOICE, window, "L-'quoted'", 0.01)
    assert [o.name for o in outcomes if not o.passed] == []
    assert warehouse.row_counts()["turns"] == 2 * len(HOSTILE)  # nothing was dropped


def test_a_duckdb_file_whose_name_starts_with_a_dot_is_a_warehouse(tmp_path: Path) -> None:
    """DuckDB names the catalog after the file's first non-empty part between dots."""
    from resources.warehouse import warehouse_for

    warehouse = warehouse_for(f"duckdb:///{tmp_path / '.hidden.duckdb'}")
    warehouse.ensure_schema()
    assert warehouse.row_counts()["conversations"] == 0


INTERRUPTED_QUERY = """
import os, signal, threading
from resources.warehouse import warehouse_for

warehouse = warehouse_for("duckdb:///" + os.environ["FILE"])
warehouse.ensure_schema()
# Ctrl-C raises KeyboardInterrupt here even when started with SIGINT ignored (a shell's
# background job is): Python leaves an ignored SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    with warehouse.connect(read_only=True) as con:  # minutes of work: SIGINT comes first
        # One thread: range() is one task, and a DuckDB worker thread running it never checks
        # for the interrupt, so the cancel would wait out the whole scan. The calling thread
        # runs tasks a few chunks at a time and takes the signal between them.
        con.execute("SET threads = 1")
        con.execute("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3").fetchone()
except BaseException as exc:
    print(type(exc).__name__)
"""


def test_ctrl_c_during_a_duckdb_query_is_an_interrupt_not_a_query_error(tmp_path: Path) -> None:
    """DuckDB takes a SIGINT that arrives mid-query and raises ``RuntimeError('Query
    interrupted')`` in its place; a sync would then fail the window as an error (exit 1)
    instead of stopping as interrupted (exit 130). The warehouse gives it back."""
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_QUERY],
        env={**os.environ, "FILE": str(tmp_path / "w.duckdb")},
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "KeyboardInterrupt", done.stdout + done.stderr
