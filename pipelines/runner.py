"""Materialize sync partitions through Dagster from the command line.

Windows are grouped into runs the way the asset's backfill policy groups them: consecutive
windows of one scope, up to ``windows_per_run`` per run, passed as a partition range. Each run is
recorded in the given instance, so runs and per-window materializations show in the Dagster
UI exactly as if they had been launched from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from dagster import AssetKey, DagsterEvent, DagsterInstance, Definitions, MultiPartitionKey

from assets.keys import POOL
from core.windows import Scope, Window
from pipelines.definitions import SYNC_JOB
from pipelines.partitions import partition_key

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class PartitionOutcome:
    key: MultiPartitionKey
    run_id: str
    success: bool
    rows: dict[str, int]
    seconds: float
    """The run's duration shared out evenly among its windows."""
    error: str | None = None


def sync_partitions(
    defs: Definitions,
    instance: DagsterInstance,
    windows: Sequence[Window],
    scopes: Sequence[Scope],
    on_outcome: Callable[[int, int, PartitionOutcome], None] | None = None,
    windows_per_run: int = 7,
    console_log_level: str = "WARNING",
    asset_selection: Sequence[AssetKey] | None = None,
) -> list[PartitionOutcome]:
    """Run the sync job over every (window, scope), scope by scope, ``windows_per_run``
    consecutive windows a run; keep going past a failed run.

    Dagster's console log is kept to ``console_log_level`` (the full event log is in the
    instance either way, for the UI). ``asset_selection`` limits the runs to some of the
    job's assets (with their checks); by default they materialize all of them.
    """
    job = defs.resolve_job_def(SYNC_JOB)
    total = len(windows) * len(scopes)
    outcomes: list[PartitionOutcome] = []
    for scope in scopes:
        for first in range(0, len(windows), windows_per_run):
            chunk = windows[first : first + windows_per_run]
            keys = [partition_key(window, scope) for window in chunk]
            started = time.monotonic()
            with _freeing_slots_of_ended_runs(instance):
                result = job.execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
                    asset_selection=asset_selection,
                    run_config={
                        "loggers": {"console": {"config": {"log_level": console_log_level}}}
                    },
                )
            rows: dict[str, dict[str, int]] = {key: {} for key in keys}
            for event in result.get_asset_materialization_events():
                materialization = event.step_materialization_data.materialization
                count = materialization.metadata.get("dagster/row_count")
                if count is not None and materialization.partition in rows:
                    table = materialization.asset_key.path[-1]
                    rows[materialization.partition][table] = int(count.value)
            error = None if result.success else _failure_message(result.all_events)
            share = (time.monotonic() - started) / len(keys)
            for key in keys:
                # A window is done when its materializations were recorded, even if a later
                # window of the same run failed.
                done = bool(rows[key])
                outcome = PartitionOutcome(
                    key, result.run_id, done, rows[key], share, None if done else error
                )
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(len(outcomes), total, outcome)
    return outcomes


def free_slots_of_ended_runs(instance: DagsterInstance, pool: str = POOL) -> list[str]:
    """Free the pool's slots held by runs that are over (or unknown to the instance); the ids
    of those runs.

    A run that ends without giving its slot back (killed, or its release lost to a locked
    SQLite file) would otherwise block every later run of a pool of one for good. Dagster's
    daemon does this (``run_monitoring.free_slots_after_run_end_seconds``); runs started
    from the CLI have no daemon.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    freed = []
    for slot in storage.get_concurrency_info(pool).claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        if (run is None or run.is_finished) and slot.run_id not in freed:
            storage.free_concurrency_slots_for_run(slot.run_id)
            freed.append(slot.run_id)
    return freed


@contextmanager
def _freeing_slots_of_ended_runs(
    instance: DagsterInstance, every_seconds: float = 2.0
) -> Iterator[None]:
    """While a run executes (and may be waiting for a slot), free slots of ended runs."""
    done = threading.Event()

    def sweep() -> None:
        while not done.wait(every_seconds):
            try:
                free_slots_of_ended_runs(instance)
            except Exception:  # a locked SQLite file: try again at the next sweep
                continue

    sweeper = threading.Thread(target=sweep, name="polyai-slot-sweeper", daemon=True)
    sweeper.start()
    try:
        yield
    finally:
        done.set()
        sweeper.join(timeout=every_seconds + 5)


def _failure_message(events: Sequence[DagsterEvent]) -> str:
    """The innermost cause of the first step failure: the sync's own error, not Dagster's
    wrapper around it."""
    for event in events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            return error.message.strip()
    return "run failed before its step started (see the run in the Dagster UI)"
