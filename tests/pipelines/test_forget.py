"""``polyai-sync forget``, run as a user runs it, on both engines: after a sync (QA sample and
saved searches on, a lake beside the warehouse), a person's conversations are found nowhere:
no table (staging and quarantine included), no lake file, not the DuckDB file's bytes. The
rest of the window stays, its KPIs are recomputed, and the erasure is recorded without the
number. With phone hashing on, the number is matched through its hash. A load in progress
whose staged pages hold the conversation is discarded, and a later sync of the window brings
the conversation back, because the API still serves it."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.normalize import normalize_page
from core.query import ConversationQuery
from core.windows import Scope, daily_window
from resources.lake import ParquetLake
from resources.warehouse import Warehouse, WindowKey, WindowLoad, read_state
from simulator import SimulatorServer
from sync.forget import ForgetError, forget
from sync.window import sync_window
from tests.conftest import SYNC_DAY, client_for, everything_stored
from tests.pipelines.cli_runs import clean_env, run_cli

# Every window table with rows (and a lake file to rewrite): the assumed per-stage breakdown
# is served too.
pytestmark = pytest.mark.latency_breakdown

SALT = "pepper-for-tests-3f9a1c"
LIVE_VOICE = Scope("live", "voice")
WINDOW = daily_window(SYNC_DAY)


@pytest.fixture(params=[False, True], ids=["plain", "hashed"])
def hashed(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
def sync_settings(hashed: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    settings = {"POLYAI_QA_SAMPLE_SIZE": "80", "POLYAI_SAVED_SEARCHES": "cancel=transcript:cancel"}
    if hashed:
        monkeypatch.setenv("POLYAI_PHONE_HASH_SALT", SALT)  # the resource reads it as an EnvVar
        settings |= {"POLYAI_HASH_PHONE_NUMBERS": "true", "POLYAI_PHONE_HASH_SALT": SALT}
    return settings


def _forget_cli(warehouse: Warehouse, lake: Path, hashed: bool, *args: str):
    extra = {"POLYAI_HASH_PHONE_NUMBERS": "true", "POLYAI_PHONE_HASH_SALT": SALT} if hashed else {}
    env = clean_env(WAREHOUSE_URL=warehouse.url, LAKE_URL=str(lake), POLYAI_DBT_MODELS="1", **extra)
    env["DAGSTER_HOME"] = str(lake.parent / "dagster_home")
    return run_cli("forget", *args, env=env, cwd=lake.parent)


@pytest.mark.e2e
def test_a_forgotten_caller_is_found_nowhere_and_the_rest_of_the_window_stays(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path, hashed: bool
) -> None:
    run_sync_job(dbt=True)
    lake = tmp_path / "lake"
    source = list(simulator.dataset.conversations_in("live", ["voice"], WINDOW.start, WINDOW.end))
    sampled = set(warehouse.read_table("qa_samples")["conversation_id"])
    # A caller one of whose conversations the QA sample drew: every place must lose it.
    caller = next(c["from_number"] for c in source if c["id"] in sampled and c["from_number"])
    ids = {c["id"] for c in source if caller in (c["from_number"], c["to_number"])}
    stored_caller = (
        warehouse.read_table("conversations").set_index("id").loc[sorted(ids)[0], "from_number"]
    )
    before = everything_stored(warehouse, lake)
    assert stored_caller in before and all(i in before for i in ids)  # so the check can fail
    assert (caller in before) is not hashed
    total = len(warehouse.read_table("conversations"))

    done = _forget_cli(warehouse, lake, hashed, "--phone-number", caller)

    assert done.returncode == 0, done.stderr
    assert f"{len(ids)} conversations removed" in done.stdout
    assert caller not in done.stdout + done.stderr and not any(i in done.stdout for i in ids)
    after = everything_stored(warehouse, lake)
    assert [v for v in (caller, stored_caller, *ids) if v in after] == []
    conversations = warehouse.read_table("conversations")
    assert len(conversations) == total - len(ids)
    kpis = warehouse.read_table("conversation_kpis")
    assert kpis["conversations"].sum() == len(conversations)  # recomputed without them
    lake_rows = ParquetLake(root=str(lake)).read_parquet(
        ParquetLake(root=str(lake)).window_file("conversations", LIVE_VOICE, WINDOW)
    )
    assert sorted(lake_rows.column("id").to_pylist()) == sorted(conversations["id"])
    (erasure,) = warehouse.read_table("erasures").to_dict("records")
    assert erasure["identified_by"] == "phone_number" and erasure["identifiers"] == 1
    assert erasure["conversations"] == len(ids) and erasure["windows"] == 1
    assert erasure["lake_files_rewritten"] >= 5  # four tables' files and the sample's CSV

    hash_key = SALT.encode() if hashed else None
    again = forget(
        warehouse, ParquetLake(root=str(lake)), phone_numbers=[caller], hash_key=hash_key
    )
    assert again.erased.conversations == 0 and again.lake_files_rewritten == 0


@pytest.mark.e2e
def test_forget_by_id_and_bad_input(
    simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path
) -> None:
    sync_window(client_for(simulator), warehouse, LIVE_VOICE, WINDOW)
    lake = tmp_path / "lake"
    ParquetLake(root=str(lake)).export_window(warehouse, LIVE_VOICE, WINDOW)
    victim, kept = sorted(warehouse.read_table("conversations")["id"])[:2]
    done = _forget_cli(warehouse, lake, False, "--conversation-id", victim)
    assert done.returncode == 0, done.stderr
    stored = everything_stored(warehouse, lake)
    assert victim not in stored and kept in stored
    assert warehouse.read_table("erasures")["identified_by"].tolist() == ["conversation_id"]

    both = _forget_cli(warehouse, lake, False, "--conversation-id", kept, "--phone-number", "1")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    with pytest.raises(ForgetError, match="empty"):
        forget(warehouse, ParquetLake(root=str(lake)), conversation_ids=[" "])
    elsewhere = clean_env(WAREHOUSE_URL="duckdb:///no/such/warehouse.duckdb", LAKE_URL=str(lake))
    elsewhere["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    nowhere = run_cli("forget", "--conversation-id", kept, env=elsewhere, cwd=tmp_path)
    assert nowhere.returncode == 2 and "no warehouse at" in nowhere.stderr
    assert not (tmp_path / "no").exists()  # and none created
    assert kept in everything_stored(warehouse, lake)  # bad input lost nothing


def _begun_load(simulator: SimulatorServer, warehouse: Warehouse) -> tuple[WindowLoad, list]:
    """A load of the window begun, and its first two pages, fetched and normalized."""
    warehouse.ensure_schema()
    config = simulator.config
    key = WindowKey(config.account_id, config.project_id, LIVE_VOICE, WINDOW)
    query = ConversationQuery(
        start_time=WINDOW.start,
        end_time=WINDOW.end,
        environment="live",
        channels=("voice",),
        limit=40,
        include_latency=True,
        include_turn_metadata=True,
    )
    pages = []
    for page in client_for(simulator, page_size=40).iter_pages(query):
        batch = normalize_page(
            page.conversations, load_id="load-1", loaded_at=datetime.now(UTC), scope=LIVE_VOICE
        )
        pages.append((batch, page.next_cursor))
        if len(pages) == 2:
            break
    load = WindowLoad(warehouse, key, "load-1")
    load.begin()
    return load, pages


def test_a_load_in_progress_holding_the_conversation_is_discarded_and_a_resync_brings_it_back(
    simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path
) -> None:
    load, pages = _begun_load(simulator, warehouse)
    load.stage(1, *pages[0])
    victim = pages[0][0].conversations.column("id")[0].as_py()
    lake = tmp_path / "lake"
    assert victim in everything_stored(warehouse, lake)

    done = forget(warehouse, ParquetLake(root=str(lake)), conversation_ids=[victim])

    assert done.erased.loads_discarded == 1 and done.erased.conversations == 0
    assert victim not in everything_stored(warehouse, lake)
    assert read_state(warehouse, load.key) is None  # the window begins again at its next sync
    result = sync_window(client_for(simulator), warehouse, LIVE_VOICE, WINDOW)
    assert result.resumed_from_page is None
    assert victim in set(warehouse.read_table("conversations")["id"])  # the API still serves it


def test_a_page_staged_ahead_of_the_writer_is_searched_too(
    simulator: SimulatorServer, duckdb_warehouse: Warehouse, tmp_path: Path
) -> None:
    """DuckDB: a worker stages pages in files ahead of the writer's commits, and a resumed
    load commits them from those files. Page 2 here is staged, not committed."""
    load, pages = _begun_load(simulator, duckdb_warehouse)
    load.stage(1, *pages[0])
    load.stage_rows(2, *pages[1])
    victim = pages[1][0].conversations.column("id")[0].as_py()
    number = next(n for n in pages[1][0].conversations.column("from_number").to_pylist() if n)
    lake = tmp_path / "lake"
    assert victim in everything_stored(duckdb_warehouse, lake)
    assert read_state(duckdb_warehouse, load.key).pages == 1

    done = forget(duckdb_warehouse, ParquetLake(root=str(lake)), phone_numbers=[number])

    assert done.erased.loads_discarded == 1
    stored = everything_stored(duckdb_warehouse, lake)
    assert number not in stored and read_state(duckdb_warehouse, load.key) is None


def test_an_erasure_stopped_half_way_through_the_lake_is_finished_by_running_it_again(
    simulator: SimulatorServer,
    duckdb_warehouse: Warehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync_window(client_for(simulator), duckdb_warehouse, LIVE_VOICE, WINDOW)
    lake = ParquetLake(root=str(tmp_path / "lake"))
    lake.export_window(duckdb_warehouse, LIVE_VOICE, WINDOW)
    leftover = Path(lake.window_file("turns", LIVE_VOICE, WINDOW)).with_name(".day.parquet.x.tmp")
    leftover.write_bytes(Path(lake.window_file("turns", LIVE_VOICE, WINDOW)).read_bytes())
    os.utime(leftover, (0, 0))  # a killed export's copy, long ago
    caller = next(n for n in duckdb_warehouse.read_table("conversations")["from_number"] if n)
    ids = set(duckdb_warehouse.read_table("conversations").query("from_number == @caller")["id"])
    write_parquet = ParquetLake.write_parquet
    writes: list[str] = []

    def dies_on_the_second_file(self: ParquetLake, path: str, rows: Any) -> None:
        writes.append(path)
        if len(writes) == 2:
            raise OSError("killed")
        write_parquet(self, path, rows)

    monkeypatch.setattr(ParquetLake, "write_parquet", dies_on_the_second_file)
    with pytest.raises(OSError, match="killed"):
        forget(duckdb_warehouse, lake, phone_numbers=[caller])
    monkeypatch.setattr(ParquetLake, "write_parquet", write_parquet)
    assert caller in everything_stored(duckdb_warehouse, tmp_path / "lake")  # the lake's

    again = forget(duckdb_warehouse, lake, phone_numbers=[caller])

    assert again.erased.conversations == 0 and again.lake_files_rewritten == 3
    stored = everything_stored(duckdb_warehouse, tmp_path / "lake")
    assert [v for v in (caller, *ids) if v in stored] == [] and not leftover.exists()


@pytest.mark.e2e
def test_forget_rewrites_the_files_of_a_lake_on_s3(
    simulator: SimulatorServer, duckdb_warehouse: Warehouse, bucket: str, tmp_path: Path
) -> None:
    sync_window(client_for(simulator), duckdb_warehouse, LIVE_VOICE, WINDOW)
    url = f"s3://{bucket}/lake"
    lake = ParquetLake(root=url)
    lake.export_window(duckdb_warehouse, LIVE_VOICE, WINDOW)
    ids = sorted(duckdb_warehouse.read_table("conversations")["id"])
    victim = ids[0]

    def lake_ids() -> dict[str, list[str]]:
        return {
            table: sorted(
                {
                    i
                    for path in lake.files(table)
                    for i in lake.read_parquet(path).column(key).to_pylist()
                }
            )
            for table, key in (("conversations", "id"), ("turns", "conversation_id"))
        }

    before = lake_ids()
    assert victim in before["conversations"] and victim in before["turns"]
    env = clean_env(WAREHOUSE_URL=duckdb_warehouse.url, LAKE_URL=url)
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    done = run_cli("forget", "--conversation-id", victim, env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert before["conversations"] == ids
    assert lake_ids() == {t: [i for i in held if i != victim] for t, held in before.items()}
    (erasure,) = duckdb_warehouse.read_table("erasures").to_dict("records")
    assert erasure["lake_files_rewritten"] == 4  # the window's four tables


def test_without_the_rewrite_the_duckdb_file_would_still_hold_the_number(
    simulator: SimulatorServer,
    duckdb_warehouse: Warehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control for the byte search above: DuckDB keeps a deleted row's bytes in the blocks
    it frees, so an erasure that did not rewrite the file would leave the number there."""
    sync_window(client_for(simulator), duckdb_warehouse, LIVE_VOICE, WINDOW)
    caller = next(n for n in duckdb_warehouse.read_table("conversations")["from_number"] if n)
    monkeypatch.setattr(type(duckdb_warehouse), "scrub", lambda self: None)

    forget(duckdb_warehouse, ParquetLake(root=str(tmp_path / "lake")), phone_numbers=[caller])

    assert caller not in set(duckdb_warehouse.read_table("conversations")["from_number"])
    assert caller.encode() in duckdb_warehouse.path.read_bytes()
