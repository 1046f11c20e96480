"""Retention through its Dagster job (what the nightly schedule runs), on both engines: a
window older than ``POLYAI_RETENTION_DAYS`` is gone from every table and the lake, a newer
one is untouched, and the removal is recorded per window and table (``retention_removals``)
and in the materialization's metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from assets.retention import RETENTION
from core.config import Settings
from core.names import RETENTION_JOB
from pipelines.definitions import build_definitions
from resources.lake import ParquetLake
from resources.warehouse import Warehouse
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


def test_windows_past_retention_are_removed_everywhere_and_recorded(
    run_sync_job, warehouse: Warehouse, tmp_path: Path, sync_settings: dict[str, str]
) -> None:
    run_sync_job(OLD_DAY)
    run_sync_job(SYNC_DAY)
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
    for table in lake_before:
        assert [lake.partition_of(f)[2] for f in lake.files(table)] == [SYNC_DAY], table
    removals = warehouse.read_table("retention_removals")
    recorded = removals.groupby("table_name")["rows"].sum().to_dict()
    assert recorded == {**{t: before[t][OLD_DAY] for t in TABLES}, "lake files": 5}
    assert (removals["cutoff"] == cutoff).all() and removals["removal_id"].nunique() == 1
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == RETENTION
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["windows_removed"] == 1
    assert metadata["rows_conversations"] == before["conversations"][OLD_DAY]
    assert metadata["lake_files_removed"] == 5  # four tables' files and the sample's CSV

    with DagsterInstance.ephemeral() as instance:  # nothing left to remove: a no-op
        assert job.execute_in_process(instance=instance).success
    assert _rows_by_day(warehouse) == after


def test_retention_is_not_defined_when_off() -> None:
    definitions = build_definitions(Settings.from_env({}))
    assert RETENTION_JOB not in {job.name for job in definitions.resolve_all_job_defs()}
