"""``polyai-sync forget``, run as a user runs it, on both engines: after a sync (QA sample and
saved searches on, a lake beside the warehouse), a person's conversations are found nowhere:
no table (staging and quarantine included), no lake file, not the DuckDB file's bytes. The
rest of the window stays, its KPIs are recomputed, and the erasure is recorded without the
number. With phone hashing on, the number is matched through its hash. A load in progress
whose staged pages hold the conversation is discarded, and a later sync of the window brings
the conversation back, because the API still serves it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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
    env = clean_env(WAREHOUSE_URL=warehouse.url, LAKE_URL=str(lake), **extra)
    env["DAGSTER_HOME"] = str(lake.parent / "dagster_home")
    return run_cli("forget", *args, env=env, cwd=lake.parent)


def test_a_forgotten_caller_is_found_nowhere_and_the_rest_of_the_window_stays(
    run_sync_job, simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path, hashed: bool
) -> None:
    run_sync_job()
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

    again = _forget_cli(warehouse, lake, hashed, "--phone-number", caller)
    assert again.returncode == 0 and "0 conversations removed" in again.stdout


def test_forget_by_id_and_bad_input(
    run_sync_job, warehouse: Warehouse, tmp_path: Path, hashed: bool
) -> None:
    if hashed:
        pytest.skip("ids are not hashed: once is enough")
    run_sync_job()
    lake = tmp_path / "lake"
    victim, kept = sorted(warehouse.read_table("conversations")["id"])[:2]
    done = _forget_cli(warehouse, lake, hashed, "--conversation-id", victim)
    assert done.returncode == 0, done.stderr
    stored = everything_stored(warehouse, lake)
    assert victim not in stored and kept in stored
    assert warehouse.read_table("erasures")["identified_by"].tolist() == ["conversation_id"]

    both = _forget_cli(warehouse, lake, hashed, "--conversation-id", kept, "--phone-number", "1")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    with pytest.raises(ForgetError, match="empty"):
        forget(warehouse, ParquetLake(root=str(lake)), conversation_ids=[" "])
    assert kept in everything_stored(warehouse, lake)  # bad input lost nothing


def test_a_load_in_progress_holding_the_conversation_is_discarded_and_a_resync_brings_it_back(
    simulator: SimulatorServer, warehouse: Warehouse, tmp_path: Path
) -> None:
    warehouse.ensure_schema()
    config = simulator.config
    key = WindowKey(config.account_id, config.project_id, LIVE_VOICE, WINDOW)
    client = client_for(simulator, page_size=40)
    query = ConversationQuery(
        start_time=WINDOW.start,
        end_time=WINDOW.end,
        environment="live",
        channels=("voice",),
        limit=40,
        include_latency=True,
        include_genai_metadata=True,
    )
    page = next(client.iter_pages(query))
    load = WindowLoad(warehouse, key, "load-1")
    load.begin()
    batch = normalize_page(
        page.conversations, load_id="load-1", loaded_at=datetime.now(UTC), scope=LIVE_VOICE
    )
    load.stage(1, batch, page.next_cursor)
    victim = batch.conversations.column("id")[0].as_py()
    lake = tmp_path / "lake"
    assert victim in everything_stored(warehouse, lake)

    done = forget(warehouse, ParquetLake(root=str(lake)), conversation_ids=[victim])

    assert done.erased.loads_discarded == 1 and done.erased.conversations == 0
    assert victim not in everything_stored(warehouse, lake)
    assert read_state(warehouse, key) is None  # the window begins again at its next sync
    result = sync_window(client, warehouse, LIVE_VOICE, WINDOW)
    assert result.resumed_from_page is None
    assert victim in set(warehouse.read_table("conversations")["id"])  # the API still serves it
