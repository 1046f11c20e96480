"""DuckDB's staged pages (Arrow IPC files beside the database, ``resources.warehouse.staging``):
pages staged ahead of a writer that stopped are committed from their files, not fetched
again; staged pages that are gone are noticed and the window loaded again."""

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from core.windows import Scope, daily_window
from resources.warehouse import WindowKey, WindowLoad, read_state, warehouse_for
from resources.warehouse.duckdb_engine import DuckDBWarehouse
from simulator import SimulatorServer
from sync.feed import PageFeed, WindowFetch
from sync.window import WindowSyncResult, sync_window
from tests.conftest import SYNC_DAY, client_for

LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)
PAGE_SIZE = 40


def _key(server: SimulatorServer) -> WindowKey:
    return WindowKey(server.config.account_id, server.config.project_id, LIVE_VOICE, WINDOW)


def _reference(server: SimulatorServer, folder: Path) -> list[str]:
    clean = warehouse_for(f"duckdb:///{folder / 'clean.duckdb'}")
    sync_window(client_for(server, page_size=PAGE_SIZE), clean, LIVE_VOICE, WINDOW)
    return sorted(clean.read_table("conversations")["id"])


def test_pages_staged_ahead_of_a_stopped_writer_are_committed_not_fetched_again(
    simulator: SimulatorServer, duckdb_warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    expected = _reference(simulator, tmp_path)
    total_pages = -(-len(expected) // PAGE_SIZE)
    assert total_pages >= 5
    key, client = _key(simulator), client_for(simulator, page_size=PAGE_SIZE)
    duckdb_warehouse.ensure_schema()
    WindowLoad(duckdb_warehouse, key, "load-1").begin()
    fetch = WindowFetch(
        key, "load-1", 1, None, datetime.now(UTC), WindowSyncResult(LIVE_VOICE, WINDOW)
    )

    def stage(key, load_id, page, batch, next_cursor):  # as sync_windows gives DuckDB
        return WindowLoad(duckdb_warehouse, key, load_id).stage_rows(page, batch, next_cursor)

    # A feed stages three pages; the writer commits the first and stops (killed).
    with PageFeed(client, lanes=0, stage_rows=stage) as feed:
        feed.submit(fetch)
        first = feed.next()
        feed.next(), feed.next()
    assert first.page is not None and first.batch is not None
    WindowLoad(duckdb_warehouse, key, "load-1").stage(1, first.batch, first.page.next_cursor)
    before = len(simulator.recent_paths)

    result = sync_window(client, duckdb_warehouse, LIVE_VOICE, WINDOW)

    assert result.resumed_from_page == 4  # pages 2 and 3 committed from their files
    assert len(simulator.recent_paths) - before == total_pages - 3
    assert sorted(duckdb_warehouse.read_table("conversations")["id"]) == expected
    assert not (duckdb_warehouse.staging.root / "load-1").exists()  # removed once published


@pytest.mark.parametrize("gone", ["the folder", "one table's file", "a column (older version)"])
def test_staged_pages_that_are_gone_are_noticed_and_the_window_loads_again(
    simulator: SimulatorServer,
    duckdb_warehouse: DuckDBWarehouse,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    gone: str,
) -> None:
    expected = _reference(simulator, tmp_path)
    key, client = _key(simulator), client_for(simulator, page_size=PAGE_SIZE)
    duckdb_warehouse.ensure_schema()
    WindowLoad(duckdb_warehouse, key, "load-1").begin()
    fetch = WindowFetch(
        key, "load-1", 1, None, datetime.now(UTC), WindowSyncResult(LIVE_VOICE, WINDOW)
    )
    with PageFeed(client, lanes=0) as feed:  # two pages committed the way PostgreSQL's are
        feed.submit(fetch)
        for number in (1, 2):
            fed = feed.next()
            assert fed.page is not None and fed.batch is not None
            load = WindowLoad(duckdb_warehouse, key, "load-1")
            load.stage(number, fed.batch, fed.page.next_cursor)
    state = read_state(duckdb_warehouse, key)
    assert state is not None and (state.status, state.pages) == ("running", 2)
    if gone == "the folder":  # someone cleaned up
        shutil.rmtree(duckdb_warehouse.staging.root)
    elif gone == "one table's file":  # a file publishing would read, lost in a crash
        (duckdb_warehouse.staging.root / "load-1" / "000002" / "turn_genai.arrow").unlink()
    else:  # staged by the version before channel labels: it lacks a column publishing reads
        path = duckdb_warehouse.staging.root / "load-1" / "000001" / "conversations.arrow"
        with pa.OSFile(str(path)) as source:  # read into memory: the file is replaced
            older = pa.ipc.open_file(source).read_all().drop_columns(["channel_label"])
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, older.schema) as writer:
            writer.write_table(older)

    with caplog.at_level(logging.WARNING):
        result = sync_window(client, duckdb_warehouse, LIVE_VOICE, WINDOW)

    assert "are no longer all there" in caplog.text
    assert "loading the window again from its first page" in caplog.text
    assert result.resumed_from_page is None
    assert sorted(duckdb_warehouse.read_table("conversations")["id"]) == expected
    assert set(duckdb_warehouse.read_table("conversations")["channel_label"]) == {"VOICE-SIP"}


def test_a_page_is_committed_once_and_a_second_commit_keeps_the_loads_files(
    simulator: SimulatorServer, duckdb_warehouse: DuckDBWarehouse
) -> None:
    """Two syncs of one load (one resumed it while the other still ran): the page is
    committed once; the sync refused does not remove files the load still needs."""
    from resources.warehouse import WarehouseError

    key, client = _key(simulator), client_for(simulator, page_size=PAGE_SIZE)
    duckdb_warehouse.ensure_schema()
    WindowLoad(duckdb_warehouse, key, "load-1").begin()
    fetch = WindowFetch(
        key, "load-1", 1, None, datetime.now(UTC), WindowSyncResult(LIVE_VOICE, WINDOW)
    )
    with PageFeed(client, lanes=0) as feed:
        feed.submit(fetch)
        fed = feed.next()
    assert fed.page is not None and fed.batch is not None
    load = WindowLoad(duckdb_warehouse, key, "load-1")
    load.stage(1, fed.batch, fed.page.next_cursor)
    with pytest.raises(WarehouseError, match="or committed the page"):
        load.stage(1, fed.batch, fed.page.next_cursor)
    state = read_state(duckdb_warehouse, key)
    assert state is not None and (state.pages, state.conversations) == (1, PAGE_SIZE)
    assert duckdb_warehouse.staging.intact("load-1", 1, PAGE_SIZE)
