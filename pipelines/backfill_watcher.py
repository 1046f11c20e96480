"""Following a sync's backfill as it runs: each window reported as soon as it lands (the
observation the sync step records for it, with its own time, read from the run's event log),
each failed run's windows when the run ends, and who holds the pool's slot when a run waits.

:mod:`pipelines.runner` drives the backfill in the main thread; :class:`BackfillWatcher` reads
the event log from a thread of its own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    PartitionKeyRange,
    PartitionsDefinition,
    RunsFilter,
)

from core import names
from core.names import POOL, WINDOW_FAILED, WINDOW_LANDED
from pipelines.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
)
from pipelines.run_outcomes import NOT_SYNCED, BackfillResult, WindowOutcome, run_failure

POLL_SECONDS = 0.5
# The runner's logger: the watcher is part of the sync it drives.
_log = logging.getLogger("polyai_sync.runner")


class BackfillWatcher:
    """Follows the backfill's runs in the event log from a thread of its own (the runs execute
    in the main thread): each window as it lands, each failed run's windows when it ends, and
    who holds the pool's slot when a run waits for it."""

    def __init__(
        self,
        instance: DagsterInstance,
        result: BackfillResult,
        keys: set[str],
        on_window: Callable[[WindowOutcome], None],
        on_notice: Callable[[str], None],
        partitions_def: PartitionsDefinition,
    ) -> None:
        self.partitions_def = partitions_def
        self.instance = instance
        self.result = result
        self.keys = keys
        self.on_window = on_window
        self.on_notice = on_notice
        self.cursors: dict[str, int | None] = {}
        self.last_landed: dict[str, float] = {}
        self.reported: set[str] = set()
        self.finished_runs: set[str] = set()
        self.waiting_noticed: set[str] = set()
        self.lock = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[None]:
        done = threading.Event()

        def loop() -> None:
            while not done.wait(POLL_SECONDS):
                try:
                    self.poll()
                except Exception as exc:  # a locked SQLite file: try again at the next poll
                    _log.debug("progress poll failed: %s", exc)

        thread = threading.Thread(target=loop, name="polyai-sync-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=10)

    def poll(self) -> None:
        with self.lock:
            runs = self.instance.get_runs(
                RunsFilter(tags={BACKFILL_ID_TAG: self.result.backfill_id}), ascending=True
            )
            for run in runs:
                if run.run_id not in self.result.run_ids:
                    self.result.run_ids.append(run.run_id)
                if run.run_id in self.finished_runs:
                    continue
                self._read_landed(run.run_id)
                if run.status == DagsterRunStatus.CANCELING:
                    # Terminated from the UI: a run executed in this process stops with it.
                    os.kill(os.getpid(), signal.SIGINT)
                if run.is_finished:
                    self.finished_runs.add(run.run_id)
                    if run.status != DagsterRunStatus.SUCCESS:
                        self._report_failed_run(run)
                else:
                    self._notice_pool_wait(run.run_id)

    def _read_landed(self, run_id: str) -> None:
        storage = self.instance.event_log_storage
        if run_id not in self.last_landed:
            record = self.instance.get_run_record_by_id(run_id)
            start = record.start_time if record and record.start_time else time.time()
            self.last_landed[run_id] = start
        connection = storage.get_records_for_run(
            run_id, cursor=self.cursors.get(run_id), of_type=DagsterEventType.ASSET_OBSERVATION
        )
        self.cursors[run_id] = connection.cursor
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            if event is None or event.asset_observation_data is None:
                continue
            observation = event.asset_observation_data.asset_observation
            key = observation.partition
            if (
                observation.asset_key != AssetKey(names.CONVERSATIONS)
                or key is None
                or key not in self.keys
                or key in self.reported
            ):
                continue
            failure = observation.metadata.get(WINDOW_FAILED)
            if failure is not None:  # failed on its own; the run goes on with the others
                self._report(WindowOutcome(key, run_id, False, error=str(failure.value)))
                continue
            if WINDOW_LANDED not in observation.metadata:
                continue
            landed = record.event_log_entry.timestamp
            self._report(
                WindowOutcome(
                    key,
                    run_id,
                    True,
                    _count(observation.metadata, "rows_conversations"),
                    _count(observation.metadata, "rows_turns"),
                    max(landed - self.last_landed[run_id], 0.0),
                    notes=_notes(observation.metadata),
                    in_flight=_number(observation.metadata, "api_in_flight"),
                    in_flight_limit=_number(observation.metadata, "api_in_flight_limit"),
                    requests_per_second=_number(observation.metadata, "api_requests_per_second"),
                )
            )
            self.last_landed[run_id] = landed

    def _report_failed_run(self, run) -> None:
        failed_key, reason = run_failure(self.instance, run.run_id)
        first = failed_key
        for key in _keys_of_run(run, self.keys, self.partitions_def):
            if key in self.reported:
                continue
            if first is None or key == first:
                first = key
                error = reason
            else:
                error = f"{NOT_SYNCED}its run stopped at {first}"
            self._report(WindowOutcome(key, run.run_id, False, error=error))

    def _report(self, outcome: WindowOutcome) -> None:
        self.reported.add(outcome.key)
        self.result.windows.append(outcome)
        self.on_window(outcome)

    def _notice_pool_wait(self, run_id: str) -> None:
        if run_id in self.waiting_noticed:
            return
        storage = self.instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            return
        info = storage.get_concurrency_info(POOL)
        waiting = {step.run_id for step in info.pending_steps if step.assigned_timestamp is None}
        if run_id not in waiting:
            return
        self.waiting_noticed.add(run_id)
        holders = sorted({slot.run_id for slot in info.claimed_slots} - {run_id})
        self.on_notice(
            f"Waiting for the {POOL!r} pool ({info.slot_count} slot(s)), held by "
            + (", ".join(_describe_run(self.instance, h) for h in holders) or "another run")
            + "; it starts when that run ends."
        )

    def report_unfinished_windows(self) -> None:
        """After an interrupt: every window not reported yet did not land in this sync."""
        for key in sorted(self.keys - self.reported):
            self._report(
                WindowOutcome(key, "", False, error=f"{NOT_SYNCED}the sync was interrupted")
            )


def _notes(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    notes = []
    collisions = _count(metadata, "collisions")
    if collisions:
        notes.append(
            f"{collisions} conversation(s) already held by another window or scope were set "
            "aside (quarantine table, reason 'collision: ...')"
        )
    quarantined = _count(metadata, "quarantined_records")
    if quarantined:
        notes.append(f"{quarantined} record(s) quarantined (quarantine table)")
    shrank = metadata.get("window_shrank")
    if shrank is not None and shrank.value:
        before = _count(metadata, "conversations_before")
        notes.append(
            f"held {before} conversations before this sync, "
            f"{_count(metadata, 'rows_conversations')} now"
        )
    return tuple(notes)


def _count(metadata: Mapping[str, Any], name: str) -> int:
    value = metadata.get(name)
    return int(value.value) if value is not None else 0


def _number(metadata: Mapping[str, Any], name: str) -> Any:
    value = metadata.get(name)
    return value.value if value is not None else None


def _describe_run(instance: DagsterInstance, run_id: str) -> str:
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return f"run {run_id}"
    started = (
        datetime.fromtimestamp(record.start_time, UTC).strftime("%H:%M:%S UTC")
        if record.start_time
        else "not started"
    )
    partition = record.dagster_run.tags.get(
        ASSET_PARTITION_RANGE_START_TAG
    ) or record.dagster_run.tags.get(PARTITION_NAME_TAG, "")
    return f"run {run_id} ({record.dagster_run.status.value.lower()} since {started}; {partition})"


def _keys_of_run(run, keys: set[str], partitions_def: PartitionsDefinition) -> list[str]:
    """The windows a run was given: its partition, or its range (on two dimensions, the
    rectangle of dates and scopes between its two ends)."""
    single = run.tags.get(PARTITION_NAME_TAG)
    if single:
        return [single] if single in keys else []
    start = run.tags.get(ASSET_PARTITION_RANGE_START_TAG)
    end = run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if not start or not end:
        return []
    in_range = partitions_def.get_partition_keys_in_range(PartitionKeyRange(start, end))
    return sorted(str(key) for key in in_range if str(key) in keys)
