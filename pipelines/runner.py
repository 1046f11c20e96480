"""``polyai-sync sync`` as Dagster runs it: one backfill, its runs ordinary runs of the code
location, recorded in the instance the UI shows.

The command submits an asset backfill of the chosen windows (the Backfills list shows it), and
then, unless a Dagster daemon already serves the instance, executes it itself with Dagster's
own backfill logic: the asset's ``BackfillPolicy`` groups consecutive windows of a scope into
runs, each run is created against the code location (so the UI can re-execute it and lists it
on the job page with its partition tags) and executed in this process by
:class:`pipelines.run_launcher.InProcessRunLauncher`. With a daemon running, the daemon
launches the runs and this command follows them.

Before anything, runs whose process is gone (killed, out of memory, a reboot) are marked failed
and their pool slots freed (:mod:`pipelines.run_workers`), so a crash never blocks the next
sync. A second sync that finds the pool's slot held by a live run says who holds it and waits.
A window is reported as soon as it lands (the observation the sync step records for it), with
its own time, read from the run's event log.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    PartitionKeyRange,
    PartitionsDefinition,
    RunsFilter,
)
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.instance.ref import InstanceRef
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_jobs

from assets.conversations import SYNC_STEP, WINDOW_LANDED
from assets.keys import CONVERSATIONS, POOL
from core.errors import transient_error_names
from pipelines.run_launcher import was_interrupted
from pipelines.run_workers import (
    DRIVER_TAG,
    free_slots,
    recover_dead_runs,
    recover_orphaned_backfills,
    this_process,
)

_TERMINAL = {
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}
_POLL_SECONDS = 0.5
LOCATION_NAME = "pipelines.definitions"
"""The code location's name wherever it is loaded: ``workspace.yaml``, ``dagster dev -m``,
``dg`` (pyproject's ``[tool.dg]``) and this command. A run records it, and the UI re-executes
a run in the location of that name."""
_log = logging.getLogger("polyai_sync.runner")


@dataclass(frozen=True)
class WindowOutcome:
    key: str
    """The partition key, ``date|scope``."""
    run_id: str
    success: bool
    conversations: int = 0
    turns: int = 0
    seconds: float = 0.0
    """From the window's start (the run's start, or the previous window landing) to it landing."""
    error: str | None = None
    notes: tuple[str, ...] = ()
    """What a landed window's numbers alone do not say (records set aside, a big drop)."""


@dataclass(frozen=True)
class Problem:
    """A failed step other than the sync (whose failures are windows'), or a failed check."""

    run_id: str
    where: str
    """The step, or ``check <name> on <window>``."""
    error: bool
    """An error (the sync exits non-zero), or a warning."""
    text: str


@dataclass
class BackfillResult:
    backfill_id: str
    windows: list[WindowOutcome] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    interrupted: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> list[WindowOutcome]:
        return [w for w in self.windows if not w.success]


def cli_instance(home: str) -> DagsterInstance:
    """The instance at ``home`` as this command uses it: the runs it launches execute here,
    in this process, at once (the instance's own coordinator and launcher are for the daemon
    and the UI). Steps' raw stdout is not captured to files: the capture runs helper processes
    that Ctrl-C reaches too (they print tracebacks), and the steps log through Dagster's event
    log, which the UI shows either way."""
    ref = InstanceRef.from_dir(
        home,
        overrides={
            "run_coordinator": {
                "module": "dagster._core.run_coordinator",
                "class": "DefaultRunCoordinator",
            },
            "run_launcher": {
                "module": "pipelines.run_launcher",
                "class": "InProcessRunLauncher",
            },
            "compute_logs": {
                "module": "dagster._core.storage.noop_compute_log_manager",
                "class": "NoOpComputeLogManager",
            },
        },
    )
    return DagsterInstance.from_ref(ref)


@contextmanager
def code_location(instance: DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    """The project's code location, loaded in this process under the name the webserver and
    the daemon give it (``workspace.yaml``), so the runs it creates are theirs to re-execute."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="pipelines.definitions",
            working_directory=os.getcwd(),
        ),
        location_name=LOCATION_NAME,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        location = context.create_request_context().get_code_location_error(LOCATION_NAME)
        if location is not None:
            raise RuntimeError(f"the code location did not load: {location.message}")
        yield context


def run_backfill(
    instance: DagsterInstance,
    workspace: WorkspaceProcessContext,
    partition_keys: Sequence[str],
    assets: Sequence[AssetKey] | None,
    title: str,
    on_window: Callable[[WindowOutcome], None] = lambda _: None,
    on_notice: Callable[[str], None] = lambda _: None,
    run_config: dict | None = None,
) -> BackfillResult:
    """Backfill ``assets`` over ``partition_keys`` and follow it to its end; every window's
    outcome, in the order they landed (failures when their run ended). ``assets=None``: every
    partitioned asset of the code location (the tables and everything computed from them)."""
    result = BackfillResult(make_new_backfill_id())
    for dead in recover_dead_runs(instance):
        marked = "canceled" if dead.status == DagsterRunStatus.CANCELED else "failed"
        on_notice(
            f"Run {dead.run_id} had lost its process (pid {dead.pid}): marked {marked}, its "
            "pool slot freed; its windows resume from their last committed page."
        )
    for backfill_id in recover_orphaned_backfills(instance):
        on_notice(f"Backfill {backfill_id} had lost the sync that drove it: marked failed.")
    asset_graph = workspace.create_request_context().asset_graph
    if assets is None:
        assets = [
            key
            for key in asset_graph.materializable_asset_keys
            if asset_graph.get(key).is_partitioned
        ]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=result.backfill_id,
        asset_graph=asset_graph,
        partition_names=list(partition_keys),
        asset_selection=list(assets),
        backfill_timestamp=time.time(),
        # Which process drives it: a later sync marks it failed if that process is gone.
        tags={DRIVER_TAG: this_process().tag()},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=None,
        run_config=run_config,
    )
    instance.add_backfill(backfill)
    partitions_def = asset_graph.get(CONVERSATIONS).partitions_def
    assert partitions_def is not None
    watcher = _Watcher(instance, result, set(partition_keys), on_window, on_notice, partitions_def)
    daemon = _daemon_serves(instance)
    if daemon:
        on_notice("A Dagster daemon serves this instance: it launches the runs; following them.")
    try:
        with watcher.running():
            while True:
                current = instance.get_backfill(result.backfill_id)
                assert current is not None
                if current.status in _TERMINAL:
                    break
                if not daemon:
                    # Dagster's own backfill step: submits the runs that are due; each executes
                    # here, to its end, inside this call.
                    list(execute_backfill_jobs(workspace, _log, [current]))
                time.sleep(_POLL_SECONDS)
    except KeyboardInterrupt:
        result.interrupted = True
        _cancel(instance, result.backfill_id, daemon)
    watcher.poll()  # whatever landed after the last poll
    watcher.report_unfinished_windows()
    for run_id in result.run_ids:
        result.problems.extend(run_problems(instance, run_id))
    return result


def run_problems(instance: DagsterInstance, run_id: str) -> list[Problem]:
    """A run's failed steps (but the sync step's, reported per window) and failed checks."""
    problems = []
    for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        if event is None or event.step_key is None or event.step_key == SYNC_STEP:
            continue
        problems.append(Problem(run_id, event.step_key, True, _step_error(event)))
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        event = record.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if not isinstance(evaluation, AssetCheckEvaluation) or evaluation.passed:
            continue
        problems.append(
            Problem(
                run_id,
                f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()}",
                evaluation.severity == AssetCheckSeverity.ERROR,
                evaluation.description or "failed",
            )
        )
    return problems


TRANSIENT_NOTE = " (transient: the same command may succeed later)"


def _step_error(event: Any) -> str:
    """The step's error in one line, with :data:`TRANSIENT_NOTE` when re-running it unchanged
    may succeed (:mod:`core.errors`)."""
    data = event.step_failure_data
    if data is None:
        return "failed"
    user = data.user_failure_data
    if user is not None and user.description:
        transient = user.metadata.get("transient")
        note = TRANSIENT_NOTE if transient is not None and transient.value is True else ""
        return user.description.strip() + note
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "failed"
    note = TRANSIENT_NOTE if error.cls_name in transient_error_names() else ""
    return error.message.strip().splitlines()[0] + note


def _daemon_serves(instance: DagsterInstance) -> bool:
    """Whether a live daemon processes this instance's backfills (a heartbeat in the last
    minute)."""
    heartbeat = instance.get_daemon_heartbeats().get("BACKFILL")
    return heartbeat is not None and time.time() - heartbeat.timestamp < 60


def _cancel(instance: DagsterInstance, backfill_id: str, daemon: bool) -> None:
    """Stop the backfill. Runs executed here were interrupted with this process (Dagster marks
    them canceled); what they committed stays committed. Under a daemon, it cancels the runs."""
    backfill = instance.get_backfill(backfill_id)
    if backfill is None or backfill.status in _TERMINAL:
        return
    instance.update_backfill(
        backfill.with_status(BulkActionStatus.CANCELING if daemon else BulkActionStatus.CANCELED)
    )
    if daemon:
        return
    for run in instance.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})):
        if not run.is_finished:
            instance.report_run_canceled(
                run, "polyai-sync sync was interrupted (Ctrl-C or SIGTERM)"
            )
        free_slots(instance, run.run_id)


class _Watcher:
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
            while not done.wait(_POLL_SECONDS):
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
                observation.asset_key != CONVERSATIONS
                or WINDOW_LANDED not in observation.metadata
                or key is None
                or key not in self.keys
                or key in self.reported
            ):
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
                )
            )
            self.last_landed[run_id] = landed

    def _report_failed_run(self, run) -> None:
        failed_key, reason = _failure(self.instance, run.run_id)
        first = failed_key
        for key in _keys_of_run(run, self.keys, self.partitions_def):
            if key in self.reported:
                continue
            if first is None or key == first:
                first = key
                error = reason
            else:
                error = f"not synced: its run stopped at {first}"
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
                WindowOutcome(key, "", False, error="not synced: the sync was interrupted")
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


def _failure(instance: DagsterInstance, run_id: str) -> tuple[str | None, str]:
    """(the window that failed, if the step said, and the reason in one line)."""
    if was_interrupted(instance, run_id):
        return None, "interrupted (Ctrl-C or SIGTERM)"
    for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        if event is None or event.step_failure_data is None:
            continue
        data = event.step_failure_data
        window = None
        if data.user_failure_data is not None:
            value = data.user_failure_data.metadata.get("window")
            window = str(value.value) if value is not None else None
        return window, _step_error(event)
    for record in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
        if record.dagster_event is not None and record.dagster_event.message:
            return None, record.dagster_event.message.strip().splitlines()[0]
    if instance.all_logs(run_id, of_type=DagsterEventType.RUN_CANCELED):
        return None, "canceled"
    return None, "the run failed before its step started (open the run in the Dagster UI)"
