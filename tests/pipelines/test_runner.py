"""Runs from the CLI runner survive a concurrency slot that a dead run never gave back."""

import threading
from pathlib import Path

import pytest

from assets.keys import POOL
from core.config import Settings
from core.windows import Scope, daily_window
from pipelines.definitions import build_definitions
from pipelines.instance import get_instance
from pipelines.runner import PartitionOutcome, free_slots_of_ended_runs, sync_partitions
from simulator import SimulatorServer
from tests.conftest import SYNC_DAY


def test_a_slot_left_by_a_dead_run_is_freed_and_the_sync_goes_on(
    simulator: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for name, value in simulator.source_variables().items():
        monkeypatch.setenv(name, value)
    instance = get_instance(tmp_path / "dagster_home")  # the project's dagster.yaml: a pool of 1
    storage = instance.event_log_storage
    # A run that died holding the pool's only slot (it is unknown to the instance now).
    assert storage.initialize_concurrency_limit_to_default(POOL)
    assert storage.claim_concurrency_slot(POOL, "dead-run", "polyai_conversations_sync").is_claimed
    settings = Settings.from_env(
        {
            "POLYAI_SYNC_START": "2026-11-01",
            "WAREHOUSE_URL": f"duckdb:///{tmp_path / 'wh.duckdb'}",
            "LAKE_URL": str(tmp_path / "lake"),
        }
    )
    outcomes: list[PartitionOutcome] = []
    run = threading.Thread(
        target=lambda: outcomes.extend(
            sync_partitions(
                build_definitions(settings),
                instance,
                [daily_window(SYNC_DAY)],
                [Scope("live", "voice")],
            )
        ),
        daemon=True,
    )
    run.start()
    run.join(timeout=120)
    assert not run.is_alive(), "the run waited for a slot no one will give back"
    assert [o.success for o in outcomes] == [True]
    claimed = {slot.run_id for slot in storage.get_concurrency_info(POOL).claimed_slots}
    assert "dead-run" not in claimed
    assert free_slots_of_ended_runs(instance) == []  # the run gave its own slot back
