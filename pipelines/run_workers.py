"""Who is running a run, and is that process still there.

Dagster marks a run failed when its process raises, but not when the process is gone: a run
killed with SIGKILL, by the out-of-memory killer or by a reboot stays ``STARTED`` for good and
keeps its pool slot, so every later sync of a pool of one waits forever (the default
``DefaultRunLauncher`` cannot tell whether a run's process lives). Here:

- :data:`run_worker_executor`, the code location's executor (Dagster's in-process executor),
  first tags the run with the process that executes it: host, boot id, pid and the process's
  start time in clock ticks (so a pid reused by another process after a crash or a reboot is
  not taken for the run's);
- :func:`worker_state` reads that tag back and says whether the process still exists;
- :func:`recover_dead_runs` marks every unfinished run whose process is gone as failed (a
  run being canceled as canceled) and frees its pool slots. The CLI calls it before every sync;
  under the daemon, :class:`pipelines.run_launcher.LocalRunLauncher` answers run monitoring's
  health check with the same test.

A run executed on another machine (a Kubernetes pod, another host sharing a PostgreSQL-backed
instance) is never judged from here: its state is ``unknown``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Executor,
    InitExecutorContext,
    RunsFilter,
    executor,
    in_process_executor,
)

from pipelines import dagster_internals

WORKER_TAG = f"{dagster_internals.HIDDEN_TAG_PREFIX}polyai-sync/worker"
"""``host|boot_id|pid|start_ticks`` of the process executing the run: for recovery, not for
people (the UI does not list it)."""

UNFINISHED = (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING)

DRIVER_TAG = f"{dagster_internals.HIDDEN_TAG_PREFIX}polyai-sync/driver"
"""On a backfill that ``polyai-sync sync`` drives: the process driving it, as in WORKER_TAG.
(Not WORKER_TAG itself: a backfill's tags are copied onto its runs.)"""

LAUNCHED_BY_TAG = "polyai-sync/launched_by"
"""What the Runs list shows of it: ``polyai-sync sync 2026-11-01..2026-11-14 on host``."""

_LEGACY = {WORKER_TAG: "polyai-sync/worker", DRIVER_TAG: "polyai-sync/driver"}
"""The keys the identity tags had before they were hidden: runs and backfills recorded then
are still recovered."""


def identity_tag(tags: Mapping[str, str], key: str) -> str:
    """The identity tag ``key`` (WORKER_TAG or DRIVER_TAG) of a run's or backfill's tags."""
    return tags.get(key) or tags.get(_LEGACY[key], "")


WorkerState = Literal["alive", "gone", "unknown"]


@dataclass(frozen=True)
class Worker:
    host: str
    boot_id: str
    pid: int
    start_ticks: int

    def tag(self) -> str:
        return f"{self.host}|{self.boot_id}|{self.pid}|{self.start_ticks}"

    @classmethod
    def parse(cls, tag: str) -> Worker | None:
        parts = tag.split("|")
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), int(parts[3]))

    @classmethod
    def of(cls, run: DagsterRun) -> Worker | None:
        """The process recorded on ``run``, if any."""
        return cls.parse(identity_tag(run.tags, WORKER_TAG))

    def state(self) -> WorkerState:
        """``gone`` when this process no longer exists on this machine."""
        if self.host != socket.gethostname():
            return "unknown"
        if self.boot_id and _boot_id() and self.boot_id != _boot_id():
            return "gone"  # the machine restarted since
        ticks = _start_ticks(self.pid)
        if ticks is None:
            return "gone"
        if ticks != -1 and self.start_ticks and ticks != self.start_ticks:
            return "gone"  # the pid now belongs to another process
        return "alive"


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: a reboot is then told by the pid check alone
        return ""


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return -1  # exists, unreadable: cannot compare
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def this_process() -> Worker:
    pid = os.getpid()
    return Worker(socket.gethostname(), _boot_id(), pid, _start_ticks(pid) or 0)


def worker_state(run: DagsterRun) -> WorkerState:
    """``gone`` when the process that executed ``run`` no longer exists on this machine."""
    return process_state(identity_tag(run.tags, WORKER_TAG))


def process_state(tag: str) -> WorkerState:
    """The state of the process a :meth:`Worker.tag` names (``unknown`` for no tag)."""
    worker = Worker.parse(tag)
    return worker.state() if worker is not None else "unknown"


@dataclass(frozen=True)
class Recovered:
    run_id: str
    status: DagsterRunStatus
    """What the run was left as: FAILURE, or CANCELED if it was being canceled."""
    pid: int


def recover_dead_runs(instance: DagsterInstance) -> list[Recovered]:
    """Mark unfinished runs whose process is gone as failed (or canceled) and free their pool
    slots; what was recovered."""
    recovered = []
    for run in instance.get_runs(filters=RunsFilter(statuses=list(UNFINISHED))):
        worker = Worker.of(run)
        if worker is None or worker.state() != "gone":
            continue
        message = (
            f"The process that ran this run (pid {worker.pid} on {worker.host}) is gone: killed, "
            "out of memory, or the machine restarted. polyai-sync marked the run "
            "{status} and freed its pool slots; a new sync resumes its windows from the last "
            "committed page."
        )
        if run.status == DagsterRunStatus.CANCELING:
            status = DagsterRunStatus.CANCELED
            instance.report_run_canceled(run, message.format(status="canceled"))
        else:
            status = DagsterRunStatus.FAILURE
            instance.report_run_failed(run, message.format(status="failed"))
        free_slots(instance, run.run_id)
        recovered.append(Recovered(run.run_id, status, worker.pid))
    return recovered


def recover_orphaned_backfills(instance: DagsterInstance) -> list[str]:
    """Mark failed the backfills that a ``polyai-sync sync`` drove and whose process is gone
    (otherwise a daemon started later would pick them up and run them again); their ids."""
    from pipelines.dagster_internals import BulkActionsFilter, BulkActionStatus

    orphaned = []
    for backfill in instance.get_backfills(
        filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])
    ):
        if process_state(identity_tag(backfill.tags, DRIVER_TAG)) == "gone":
            instance.update_backfill(backfill.with_status(BulkActionStatus.FAILED))
            orphaned.append(backfill.backfill_id)
    return orphaned


def free_slots(instance: DagsterInstance, run_id: str) -> None:
    """Give back every pool slot (claimed or waited for) of ``run_id``."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


class _WorkerTaggingExecutor(Executor):
    """Dagster's in-process executor that first records which process executes the run."""

    def __init__(self, in_process: Executor) -> None:
        self._in_process = in_process

    @property
    def retries(self):
        return self._in_process.retries

    @property
    def step_dependency_config(self):
        return self._in_process.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator:  # type: ignore[override]
        plan_context.instance.add_run_tags(plan_context.run_id, {WORKER_TAG: this_process().tag()})
        yield from self._in_process.execute(plan_context, execution_plan)


@executor(name="in_process", config_schema=in_process_executor.config_schema)
def run_worker_executor(init_context: InitExecutorContext) -> Executor:
    """Every step in the run's own process (one DuckDB writer, no process per step), the run
    tagged with that process so a dead run can be told from a live one. Dagster's own
    in-process executor, built from the same config, does the executing."""
    create = in_process_executor.executor_creation_fn
    assert create is not None
    return _WorkerTaggingExecutor(create(init_context))


# Every process that loads the code location executes steps that may wait for a pool slot.
dagster_internals.stop_pool_wait_spinning()
