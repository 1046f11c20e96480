"""What a sync's runs came to, read from their event logs: each window's outcome, each problem
outside the windows (another step's failure, a failed check), and why a run failed, in one line.

:mod:`pipelines.runner` collects these into a :class:`BackfillResult`;
:mod:`pipelines.backfill_watcher` reads a failed run's reason as soon as the run ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagster import AssetCheckEvaluation, AssetCheckSeverity, DagsterEventType, DagsterInstance

from core.errors import TRANSIENT_NOTE, transient_error_names
from core.names import SYNC_STEP
from pipelines.run_launcher import was_interrupted

NOT_SYNCED = "not synced: "
"""How the error of a window that was not reached begins (its run stopped at another window,
or the sync was interrupted)."""


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
    in_flight: int | None = None
    """Requests in flight when it landed, the limit then, and the requests per second since
    its run's sync step began (``None``: not recorded)."""
    in_flight_limit: int | None = None
    requests_per_second: float | None = None


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


def run_failure(instance: DagsterInstance, run_id: str) -> tuple[str | None, str]:
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
