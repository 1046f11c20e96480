"""Run launchers for the project's Dagster instance.

- :class:`LocalRunLauncher` is Dagster's ``DefaultRunLauncher`` (a run per process, started by
  the code server) that can also answer run monitoring's health check, so the daemon fails a
  run whose process is gone instead of leaving it ``STARTED`` with its pool slot held forever.
  ``pipelines/dagster.yaml`` (what ``polyai-sync ui`` and ``dagster dev`` use) and
  ``deploy/dagster.yaml`` configure it with run monitoring on.
- :class:`InProcessRunLauncher` executes a run in the calling process: ``polyai-sync sync``
  drives its backfill with Dagster's own backfill logic and this launcher, so its runs are
  ordinary runs of the code location (re-executable from the UI) without a daemon or a code
  server, and Ctrl-C reaches the step directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from dagster import DagsterEventType, DefaultRunLauncher

from pipelines.dagster_internals import (
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
    execute_run,
    recon_job_from_origin,
)
from pipelines.run_workers import Worker

# Dagster's backfill step submits runs from inside an asyncio loop, so a run executed here
# cannot run its own loop's clean-up, and Python warns about the coroutine it left. Harmless.
warnings.filterwarnings(
    "ignore", message="coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited"
)


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` plus a health check: a run whose process is gone has failed."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:  # type: ignore[override]
        worker = Worker.of(run)
        if worker is not None and worker.state() == "gone":
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"the run's process (pid {worker.pid}) is gone: killed, out of memory, or the "
                "machine restarted",
            )
        # Alive, or executed on another machine: not ours to judge.
        return CheckRunHealthResult(WorkerStatus.RUNNING)


def was_interrupted(instance, run_id: str) -> bool:
    """Whether the run ended because its process was interrupted (Ctrl-C, SIGTERM)."""
    for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        error = record.dagster_event.step_failure_data.error if record.dagster_event else None
        if error is not None and error.cls_name == "DagsterExecutionInterruptedError":
            return True
    return any(
        "interrupted" in (record.dagster_event.message or "")
        for record in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
        if record.dagster_event
    )


class InProcessRunLauncher(RunLauncher, ConfigurableClass):
    """Executes each launched run to its end in the calling thread."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> InProcessRunLauncher:
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        assert context.job_code_origin is not None
        run = context.dagster_run
        execute_run(recon_job_from_origin(context.job_code_origin), run, self._instance)
        # Dagster turns Ctrl-C (and SIGTERM, which the CLI routes the same way) inside a step
        # into that step's failure and returns normally; the command must stop, not launch
        # the backfill's next run.
        if was_interrupted(self._instance, run.run_id):
            raise KeyboardInterrupt

    def terminate(self, run_id: str) -> bool:
        # A run of this launcher stops on Ctrl-C or SIGTERM in the process that executes it
        # (the CLI also stops when the UI marks its run canceling): nothing to reach from here.
        return False
