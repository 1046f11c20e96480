"""Retention through its Dagster job (what the nightly schedule runs), on both engines: a
window older than ``POLYAI_RETENTION_DAYS`` is gone from every table and the lake, a newer
one is untouched, and the removal is recorded per window and table (``retention_removals``)
and in the materialization's metadata."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import DagsterInstance

from assets.retention import RETENTION
from core.config import Settings
from core.names import RETENTION_JOB
from core.normalize import normalize_page
from core.windows import Scope, daily_window
from pipelines.definitions import build_definitions
from resources.lake import ParquetLake
from resources.warehouse import Warehouse, WindowKey, WindowLoad
from resources.warehouse.sql import count
from simulator import SimulatorServer
from sync.retention import retention_cutoff
from tests.conftest import SYNC_DAY

OLD_DAY = SYNC_DAY - timedelta(days=10)
# The cutoff falls between the two days whatever day the suite runs on.
DAYS = (datetime.now(UTC).date() - SYNC_DAY).days + 5
TABLES = ("conversations", "turns", "turn_latency", "turn_genai", "conversation_kpis",
          "latency_kpis", "genai_kpis", "qa_samples", "saved_search_matches")  # fmt: skip


@pytest.fixture
def sync_settings() -> dict[str, str]:
    return {
        "POLYAI_QA_SAMPLE_SIZE": "10",
        "POLYAI_SAVED_SEARCHES": "human=semantic:talk to a human",
        "POLYAI_RETENTION_DAYS": str(DAYS),
    }


def _rows_by_day(warehouse: Warehouse) -> dict[str, dict[Any, int]]:
    """Rows per table and window day (the per-turn tables through their conversation)."""
    days = warehouse.read_table("conversations").set_index("id")["conversation_date"]
    counts = {}
    for table in TABLES:
        rows = warehouse.read_table(table)
        if "conversation_date" not in rows:
            rows["conversation_date"] = rows["conversation_id"].map(days)
        counts[table] = rows.groupby("conversation_date").size().to_dict()
    return counts


@pytest.mark.latency_breakdown  # rows in every table
def test_windows_past_retention_are_removed_everywhere_and_recorded(
    run_sync_job,
    simulator: SimulatorServer,
    warehouse: Warehouse,
    tmp_path: Path,
    sync_settings: dict[str, str],
) -> None:
    run_sync_job(OLD_DAY, dbt=True)
    run_sync_job(SYNC_DAY, dbt=True)
    old_load = _a_load_in_progress_and_a_quarantined_record(warehouse, simulator, OLD_DAY)
    lake = ParquetLake(root=str(tmp_path / "lake"))
    before = _rows_by_day(warehouse)
    assert [t for t in TABLES if not (before[t].get(OLD_DAY) and before[t].get(SYNC_DAY))] == []
    lake_before = {t: lake.files(t) for t in ("conversations", "turns", "qa_samples")}
    assert all(len(files) == 2 for files in lake_before.values())  # one file per day
    cutoff = retention_cutoff(DAYS, datetime.now(UTC).date())
    assert OLD_DAY < cutoff.date() <= SYNC_DAY

    settings = Settings.from_env(
        {"WAREHOUSE_URL": warehouse.url, "LAKE_URL": lake.root, **sync_settings}
    )
    job = build_definitions(settings).resolve_job_def(RETENTION_JOB)
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
    assert result.success

    after = _rows_by_day(warehouse)
    assert {t: list(after[t]) for t in TABLES} == {t: [SYNC_DAY] for t in TABLES}
    assert all(after[t][SYNC_DAY] == before[t][SYNC_DAY] for t in TABLES)  # the new day kept
    assert (warehouse.read_table("sync_state")["window_start"] >= cutoff).all()
    assert (warehouse.read_table("quarantine")["window_start"] >= cutoff).all()
    assert _staged(warehouse, old_load) == 0  # its staged page gone with its state
    for table in lake_before:
        assert [lake.partition_of(f)[2] for f in lake.files(table)] == [SYNC_DAY], table
    removals = warehouse.read_table("retention_removals")
    recorded = removals.groupby("table_name")["rows"].sum().to_dict()
    expected = {**{t: before[t][OLD_DAY] for t in TABLES}, "quarantine": 1, "lake files": 5}
    assert recorded == expected
    assert (removals["cutoff"] == cutoff).all() and removals["removal_id"].nunique() == 1
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == RETENTION
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["windows_removed"] == 2  # live.voice, and live.chat's quarantined record
    assert metadata["rows_conversations"] == before["conversations"][OLD_DAY]
    assert metadata["lake_files_removed"] == 5  # four tables' files and the sample's CSV

    with DagsterInstance.ephemeral() as instance:  # nothing left to remove: a no-op
        assert job.execute_in_process(instance=instance).success
    assert _rows_by_day(warehouse) == after


def _a_load_in_progress_and_a_quarantined_record(
    warehouse: Warehouse, simulator: SimulatorServer, day: date
) -> str:
    """In the old window's other scope: a load that staged a page and stopped, and a record
    set aside; the load's id."""
    window = daily_window(day)
    key = WindowKey("acct-test", "proj-test", Scope("live", "chat"), window)
    load = WindowLoad(warehouse, key, "old-load")
    load.begin()
    records = list(simulator.dataset.conversations_in("live", ["chat"], window.start, window.end))
    batch = normalize_page(records[:3], load_id="old-load", loaded_at=window.start, scope=key.scope)
    load.stage(1, batch, "next")
    with warehouse.connect() as con:
        con.execute(
            "INSERT INTO quarantine VALUES ('old-load', 99, 0, 'x', 'live', 'chat', $start, "
            "'a test record', CAST($raw AS JSON), $start)",
            {"start": window.start, "raw": '{"id": "x"}'},
        )
    assert _staged(warehouse, "old-load") == 3
    return "old-load"


def _staged(warehouse: Warehouse, load_id: str) -> int:
    """Conversations the load has staged (tables or files)."""
    root = getattr(warehouse.staging, "root", None)
    if root is not None:
        return sum(
            len(pa.ipc.open_file(str(p)).read_all())
            for p in root.glob(f"{load_id}/*/conversations.arrow")
        )
    with warehouse.connect(read_only=True) as con:
        return count(
            con, "SELECT count(*) FROM _stage_conversations WHERE load_id = $l", {"l": load_id}
        )


def test_retention_is_not_defined_when_off() -> None:
    definitions = build_definitions(Settings.from_env({}))
    assert RETENTION_JOB not in {job.name for job in definitions.resolve_all_job_defs()}
