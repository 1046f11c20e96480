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
its own time, read from the run's event log (:mod:`pipelines.backfill_watcher`); what the runs
came to is :mod:`pipelines.run_outcomes`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterInvalidConfigError,
    DagsterRunStatus,
    RunsFilter,
)

from core import names
from pipelines.backfill_watcher import POLL_SECONDS, BackfillWatcher
from pipelines.dagster_internals import (
    BACKFILL_ID_TAG,
    DEFAULT_RUN_COORDINATOR,
    NOOP_COMPUTE_LOG_MANAGER,
    BulkActionStatus,
    InProcessCodeLocationOrigin,
    InProcessWorkspaceLoadTarget,
    InstanceRef,
    LoadableTargetOrigin,
    PartitionBackfill,
    WorkspaceProcessContext,
    default_sqlite_base_dir,
    execute_backfill_jobs,
    make_new_backfill_id,
    pooled_sqlite_storages,
)
from pipelines.run_outcomes import BackfillResult, WindowOutcome, run_problems
from pipelines.run_workers import (
    DRIVER_TAG,
    LAUNCHED_BY_TAG,
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
LOCATION_NAME = "pipelines.definitions"
"""The code location's name wherever it is loaded: ``workspace.yaml``, ``dagster dev -m``,
``dg`` (pyproject's ``[tool.dg]``) and this command. A run records it, and the UI re-executes
a run in the location of that name."""
_log = logging.getLogger("polyai_sync.runner")


def cli_instance(home: str) -> DagsterInstance:
    """The instance at ``home`` as this command uses it: the runs it launches execute here,
    in this process, at once (the instance's own coordinator and launcher are for the daemon
    and the UI). Steps' raw stdout is not captured to files: the capture runs helper processes
    that Ctrl-C reaches too (they print tracebacks), and the steps log through Dagster's event
    log, which the UI shows either way. On Dagster's default SQLite storage, the event log
    keeps its engines open (:mod:`pipelines.event_log`): the same files, at half the cost."""
    overrides = {
        "run_coordinator": DEFAULT_RUN_COORDINATOR,
        "run_launcher": {"module": "pipelines.run_launcher", "class": "InProcessRunLauncher"},
        "compute_logs": NOOP_COMPUTE_LOG_MANAGER,
    }
    ref = InstanceRef.from_dir(home, overrides=overrides)
    base_dir = default_sqlite_base_dir(ref)
    if base_dir is not None:
        with contextlib.suppress(DagsterInvalidConfigError):  # `storage:` set in dagster.yaml
            pooled = {**overrides, **pooled_sqlite_storages(base_dir)}
            ref = InstanceRef.from_dir(home, overrides=pooled)
    return DagsterInstance.from_ref(ref)


@contextmanager
def code_location(
    instance: DagsterInstance, module: str = LOCATION_NAME
) -> Iterator[WorkspaceProcessContext]:
    """The project's code location, loaded in this process under the name the webserver and
    the daemon give it (``workspace.yaml``), so the runs it creates are theirs to re-execute.
    (``module``: another module's ``defs`` under that name, for the benchmarks.)"""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=module,
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
    follow_windows: bool = True,
) -> BackfillResult:
    """Backfill ``assets`` over ``partition_keys`` and follow it to its end; every window's
    outcome, in the order they landed (failures when their run ended). ``assets=None``: every
    partitioned asset of the code location (the tables and everything computed from them).
    ``follow_windows`` False: a backfill that does not sync (what is computed from the
    tables): no window outcomes, only its runs and their problems."""
    result = BackfillResult(make_new_backfill_id())
    _recover_crashed(instance, on_notice)
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
        tags={
            DRIVER_TAG: this_process().tag(),
            LAUNCHED_BY_TAG: f"{title} on {socket.gethostname()}",
        },
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=None,
        run_config=run_config,
    )
    instance.add_backfill(backfill)
    partitions_def = asset_graph.get(AssetKey(names.CONVERSATIONS)).partitions_def
    assert partitions_def is not None
    followed = set(partition_keys) if follow_windows else set()
    watcher = BackfillWatcher(instance, result, followed, on_window, on_notice, partitions_def)
    daemon = _daemon_serves(instance)
    if daemon:
        on_notice("A Dagster daemon serves this instance: it launches the runs; following them.")
    _drive(instance, workspace, result, watcher, daemon)
    watcher.poll()  # whatever landed after the last poll
    watcher.report_unfinished_windows()
    for run_id in result.run_ids:
        result.problems.extend(run_problems(instance, run_id))
    return result


def landed_in_failed_runs(instance: DagsterInstance, result: BackfillResult) -> list[str]:
    """The windows that landed in a run that then failed (another of its windows failed):
    Dagster skipped the steps computed from their tables in that run."""
    failed = {
        run.run_id
        for run in instance.get_runs(RunsFilter(run_ids=list(result.run_ids)))
        if run.status == DagsterRunStatus.FAILURE
    }
    return [w.key for w in result.windows if w.success and w.run_id in failed]


def computed_assets(workspace: WorkspaceProcessContext) -> list[AssetKey]:
    """The partitioned assets computed from the synced tables (KPIs, lake, sample, searches):
    every one but the sync step's."""
    graph = workspace.create_request_context().asset_graph
    tables = set(graph.get(AssetKey(names.CONVERSATIONS)).execution_set_asset_keys)
    return [
        key
        for key in graph.materializable_asset_keys
        if graph.get(key).is_partitioned and key not in tables
    ]


def _recover_crashed(instance: DagsterInstance, on_notice: Callable[[str], None]) -> None:
    """Runs whose process is gone, and backfills whose driving sync is gone, marked as ended
    (their pool slots freed), each said, so a crash never blocks this sync."""
    for dead in recover_dead_runs(instance):
        marked = "canceled" if dead.status == DagsterRunStatus.CANCELED else "failed"
        on_notice(
            f"Run {dead.run_id} had lost its process (pid {dead.pid}): marked {marked}, its "
            "pool slot freed; its windows resume from their last committed page."
        )
    for backfill_id in recover_orphaned_backfills(instance):
        on_notice(f"Backfill {backfill_id} had lost the sync that drove it: marked failed.")


def _drive(
    instance: DagsterInstance,
    workspace: WorkspaceProcessContext,
    result: BackfillResult,
    watcher: BackfillWatcher,
    daemon: bool,
) -> None:
    """Until the backfill ends: execute its due runs here (or, under a daemon, wait for them),
    the watcher reporting windows meanwhile. Ctrl-C cancels it."""
    try:
        with watcher.running():
            while True:
                current = instance.get_backfill(result.backfill_id)
                assert current is not None
                if current.status in _TERMINAL:
                    break
                if daemon or not _iterate(instance, workspace, current):
                    time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        result.interrupted = True
        _cancel(instance, result.backfill_id, daemon)


def _iterate(
    instance: DagsterInstance, workspace: WorkspaceProcessContext, backfill: PartitionBackfill
) -> bool:
    """Dagster's own backfill step: submits the runs that are due, each executed here, to its
    end, inside this call. Whether it launched any (then the next step follows at once: it is
    the one that sees those runs ended and completes the backfill)."""
    runs = RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id})
    before = instance.get_runs_count(runs)
    list(execute_backfill_jobs(workspace, _log, [backfill]))
    return instance.get_runs_count(runs) > before


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
