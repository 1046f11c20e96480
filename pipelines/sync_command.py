"""``polyai-sync sync`` (and the demo's sync) as the terminal shows it: a line per window as it
lands, a summary, what failed on stderr, and where the backfill is in the Dagster UI.

The backfill itself is :func:`pipelines.runner.run_backfill`; Dagster is imported only once a
sync starts, so that ``--help`` and configuration errors answer without loading it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings
from core.urls import display_url
from core.windows import Scope, windows_of_days
from pipelines.progress import SyncProgress, api_pace

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from pipelines.dagster_internals import WorkspaceProcessContext
    from pipelines.run_outcomes import BackfillResult, WindowOutcome

UI_PORT = 3000
"""Where ``polyai-sync ui`` serves by default; a sync's last line links there."""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a command imports Dagster and the code
    location, then everything imported moved out of its sight (``gc.freeze``). Collections
    during those imports free nothing (modules live until exit) and cost about a fifth of the
    import time; later ones no longer walk the definitions' objects. A two-day sync took 0.78x
    the CPU (benchmarks/sync_start.py, docs/performance.md). Call :func:`collector_resumed`
    before the process exits."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def collector_resumed() -> None:
    """What :func:`collector_paused` froze, back in the collector's sight, so that the
    interpreter's exit frees it (frozen, DuckDB's types are reported as leaked at exit)."""
    gc.unfreeze()


def run_sync(
    settings: Settings,
    days: list[date],
    scopes: list[Scope],
    home: Path,
    verbose: bool = False,
) -> int:
    """Backfill every (day, scope) partition through Dagster; 0 when all succeeded."""
    # Imported here so that `--help` and configuration errors answer without loading Dagster.
    with collector_paused():
        # The code location's module and the backfill's, loaded now (used by _backfill).
        import pipelines.definitions
        import pipelines.runner  # noqa: F401
        from pipelines.instance import dagster_home
    try:
        return _backfill(settings, days, scopes, dagster_home(home), verbose)
    finally:
        collector_resumed()


def _backfill(
    settings: Settings, days: list[date], scopes: list[Scope], home: Path, verbose: bool
) -> int:
    from pipelines.partitions import partition_key
    from pipelines.runner import cli_instance, code_location, run_backfill

    windows = windows_of_days(days, settings.granularity)
    keys = [str(partition_key(window, scope)) for scope in scopes for window in windows]
    progress = SyncProgress(total=len(keys), write=lambda line: print(line, flush=True))
    print(
        f"Syncing {len(days)} day(s) ({len(windows)} {settings.granularity} window(s)) x "
        f"{len(scopes)} scope(s) into {display_url(settings.warehouse_url)} "
        f"(Dagster instance {home})",
        flush=True,
    )
    # Dagster's own console output (and its tracebacks) only with --verbose: the lines below
    # say what happened, and every event is in the instance for the UI.
    level = "DEBUG" if verbose else "CRITICAL"
    with (
        _stopping_on_sigterm(),
        _interrupts_not_logged_as_errors(),
        cli_instance(str(home)) as instance,
        code_location(instance) as workspace,
    ):
        run_config = {"loggers": {"console": {"config": {"log_level": level}}}}
        result = run_backfill(
            instance,
            workspace,
            keys,
            None,
            title=f"polyai-sync sync {days[0]}..{days[-1]}",
            on_window=_window_printer(progress),
            on_notice=lambda line: print(line, flush=True),
            run_config=run_config,
        )
        _catch_up(instance, workspace, result, run_config)
    return _print_result(result, len(keys))


def _catch_up(
    instance: DagsterInstance,
    workspace: WorkspaceProcessContext,
    result: BackfillResult,
    run_config: dict,
) -> None:
    """What a failed run skipped for the windows that did land in it (its steps computed from
    the tables: Dagster skips them once the sync step fails), computed now, as a backfill of
    those assets over those windows; its problems join the sync's."""
    from pipelines.runner import computed_assets, landed_in_failed_runs, run_backfill

    windows = [] if result.interrupted else landed_in_failed_runs(instance, result)
    if not windows:
        return
    print(
        f"Computing the KPIs and lake of the {len(windows)} window(s) that landed in a run "
        "another window failed ...",
        flush=True,
    )
    follow = run_backfill(
        instance,
        workspace,
        windows,
        computed_assets(workspace),
        title=f"polyai-sync sync: what {len(windows)} landed window(s) need",
        on_notice=lambda line: print(line, flush=True),
        run_config=run_config,
        follow_windows=False,
    )
    result.run_ids.extend(follow.run_ids)
    result.problems.extend(follow.problems)
    result.interrupted = follow.interrupted


def _window_printer(progress: SyncProgress) -> Callable[[WindowOutcome], None]:
    """A progress line for each window as it lands or fails, and a line per warning."""

    def report(outcome: WindowOutcome) -> None:
        label = outcome.key.replace("|", " ")
        if outcome.success:
            api = api_pace(outcome.in_flight, outcome.in_flight_limit, outcome.requests_per_second)
            progress.window_done(label, outcome.conversations, outcome.turns, outcome.seconds, api)
            for note in outcome.notes:
                print(f"  warning: {label}: {note}", flush=True)
        else:
            progress.window_failed(label, outcome.error or "failed")

    return report


def _print_result(result: BackfillResult, windows: int) -> int:
    """The summary, what failed, where to look in the UI; the exit status: 0 when all of the
    ``windows`` landed with no error, 130 when interrupted, else 1."""
    landed = [w for w in result.windows if w.success]
    print(
        f"\n{len(landed)} of {windows} window(s) synced, {len(result.failed)} failed: "
        f"{sum(w.conversations for w in landed):,} conversations, "
        f"{sum(w.turns for w in landed):,} turns",
        flush=True,
    )
    _print_failed(result.failed)
    errors = [p for p in result.problems if p.error]
    for problem in result.problems:
        kind = "FAILED" if problem.error else "warning"
        print(f"  {kind}: {problem.where}: {problem.text}", file=sys.stderr, flush=True)
    ui = os.environ.get("DAGSTER_UI_URL", f"http://127.0.0.1:{UI_PORT}").rstrip("/")
    print(
        f"Backfill {result.backfill_id}, runs {', '.join(result.run_ids) or '(none)'}\n"
        f"In the Dagster UI (polyai-sync ui): {ui}/runs/b/{result.backfill_id}",
        flush=True,
    )
    if result.interrupted:
        print(
            "Interrupted: what was committed stays; run the same command to resume.",
            file=sys.stderr,
        )
        return 130
    return 1 if result.failed or errors or len(landed) < windows else 0


def _print_failed(failed: list[WindowOutcome]) -> None:
    """Each window that failed with its own cause; those that were not reached (their run
    stopped at another window, or the sync was interrupted) once per reason."""
    from pipelines.run_outcomes import NOT_SYNCED

    unreached: dict[str, list[str]] = {}
    for window in failed:
        label = window.key.replace("|", " ")
        if (window.error or "").startswith(NOT_SYNCED):
            unreached.setdefault(window.error or "", []).append(label)
        else:
            print(f"  {label}: {window.error}", file=sys.stderr, flush=True)
    for reason, labels in unreached.items():
        print(f"  {len(labels)} window(s) {reason}: {', '.join(labels)}", file=sys.stderr)


class _NotAnInterrupt(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.exc_info[0] if record.exc_info else None
        return kind is None or issubclass(kind, Exception)


@contextlib.contextmanager
def _interrupts_not_logged_as_errors() -> Iterator[None]:
    """Ctrl-C or SIGTERM can land while SQLAlchemy's pool closes one of the Dagster instance's
    connections: the pool logs "Exception closing connection" with the interrupt's traceback
    (to stderr, through logging's last-resort handler) and re-raises it, and the run stops as
    interrupted. The interrupt is not an error: the pool's records that carry one are dropped;
    any other still reaches stderr."""
    pool = logging.getLogger("sqlalchemy.pool")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(_NotAnInterrupt())
    pool.addHandler(handler)
    propagate, pool.propagate = pool.propagate, False
    try:
        yield
    finally:
        pool.removeHandler(handler)
        pool.propagate = propagate


@contextlib.contextmanager
def _stopping_on_sigterm():
    """SIGTERM (systemd, kill, a CI timeout) stops a sync the way Ctrl-C does: through whatever
    handles SIGINT at that moment (Dagster defers it to a safe point inside a run)."""
    previous = signal.signal(
        signal.SIGTERM, lambda signum, frame: signal.getsignal(signal.SIGINT)(signum, frame)
    )
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
