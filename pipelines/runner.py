"""Materialize sync partitions through Dagster from the command line.

Each partition is one run of the sync job, recorded in the given instance, so the runs and
materializations show in the Dagster UI exactly as if they had been launched from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from dagster import DagsterEvent, DagsterInstance, Definitions, MultiPartitionKey

from core.windows import Scope
from pipelines.definitions import SYNC_JOB
from pipelines.partitions import partition_key


@dataclass(frozen=True)
class PartitionOutcome:
    key: MultiPartitionKey
    run_id: str
    success: bool
    rows: dict[str, int]
    seconds: float
    error: str | None = None


def sync_partitions(
    defs: Definitions,
    instance: DagsterInstance,
    days: Sequence[date],
    scopes: Sequence[Scope],
    on_outcome: Callable[[int, int, PartitionOutcome], None] | None = None,
    console_log_level: str = "WARNING",
) -> list[PartitionOutcome]:
    """Run the sync job once per (day, scope), in date order; keep going past a failure.

    Dagster's console log is kept to ``console_log_level`` (the full event log is in the
    instance either way, for the UI).
    """
    job = defs.resolve_job_def(SYNC_JOB)
    keys = [partition_key(day, scope) for day in days for scope in scopes]
    outcomes: list[PartitionOutcome] = []
    for done, key in enumerate(keys, start=1):
        started = time.monotonic()
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": console_log_level}}}},
        )
        rows: dict[str, int] = {}
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            count = materialization.metadata.get("dagster/row_count")
            if count is not None:
                rows[materialization.asset_key.path[-1]] = int(count.value)
        error = None if result.success else _failure_message(result.all_events)
        outcome = PartitionOutcome(
            key, result.run_id, result.success, rows, time.monotonic() - started, error
        )
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(done, len(keys), outcome)
    return outcomes


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
