"""The one door to Dagster's internals: every ``dagster._*`` name the project uses, and why.

Checked against Dagster 1.13.27 (:data:`CHECKED_VERSIONS`). Dagster promises nothing for
these names, not even between patch releases: before moving to another version, re-read each
entry below against that version's source, then widen :data:`CHECKED_VERSIONS`
(``tests/pipelines/test_dagster_internals.py`` fails until then, and checks every name still
exists with the call shape used here). Everything else in the project imports Dagster's public
API, or this module; a test walks the packages to keep it so.

Why the public API does not suffice, by what the project does with them:

- **Driving an asset backfill in ``polyai-sync sync``** (:mod:`pipelines.runner`):
  ``PartitionBackfill``, ``BulkActionStatus``, ``BulkActionsFilter``, ``make_new_backfill_id``
  and ``execute_backfill_jobs``. The public API cannot create, list or execute a backfill
  (only the UI's GraphQL and the daemon do); ``DagsterInstance.add_backfill``,
  ``get_backfills`` and ``update_backfill`` take and return these objects.
  ``execute_backfill_jobs`` is the daemon's own backfill step, so the command's runs are
  grouped by the asset's ``BackfillPolicy`` exactly as under the daemon.
- **Loading the code location in this process** (:mod:`pipelines.runner`):
  ``WorkspaceProcessContext``, ``InProcessWorkspaceLoadTarget``,
  ``InProcessCodeLocationOrigin``, ``LoadableTargetOrigin``. ``execute_backfill_jobs`` takes a
  workspace, and the runs must name the location as the webserver does to be re-executable
  there; ``Definitions`` alone is not a workspace.
- **The command's own instance** (:mod:`pipelines.runner`): ``InstanceRef`` (documented, but
  only importable from a private path). ``DagsterInstance.from_config`` takes no overrides,
  and the command swaps the launcher, the coordinator and the compute logs of the instance
  the UI reads without writing a second ``dagster.yaml``; :data:`DEFAULT_RUN_COORDINATOR` and
  :data:`NOOP_COMPUTE_LOG_MANAGER` name the private classes those overrides load.
- **Run launchers** (:mod:`pipelines.run_launcher`): ``RunLauncher`` (and its ``_instance``),
  ``LaunchRunContext``, ``CheckRunHealthResult``, ``WorkerStatus``, ``ConfigurableClass``,
  ``ConfigurableClassData``. Only ``DefaultRunLauncher`` is exported; a launcher of our own,
  loadable from ``dagster.yaml``, must subclass these (Dagster's docs list them, at these
  private paths). ``execute_run`` and ``recon_job_from_origin``: the public ``execute_job``
  creates a new run, and a launcher must execute the run the backfill already created.
- **Run tags** (:mod:`pipelines.backfill_watcher`, :mod:`pipelines.runner`):
  ``BACKFILL_ID_TAG``, ``PARTITION_NAME_TAG``, ``ASSET_PARTITION_RANGE_START_TAG``,
  ``ASSET_PARTITION_RANGE_END_TAG``; ``HIDDEN_TAG_PREFIX``, a tag the UI does not list (the
  processes recovery needs to know). Only ``MAX_RUNTIME_SECONDS_TAG`` is exported;
  ``RunsFilter.for_backfill`` exists but is not documented either. Their values are stored
  on every run, so the test pins them too.
- **An event log that keeps its engines open** (:mod:`pipelines.event_log`):
  ``SqliteEventLogStorage`` (documented as the instance's default event log, but only
  importable from a private path) and ``SQLITE_BUSY_TIMEOUT_SECONDS``. The subclass overrides
  its private ``_connect``, ``_initdb``, ``_initialized_dbs`` and ``_db_lock`` use: Dagster's
  builds an engine per event, half of a backfill's time, and no setting changes that.
  :func:`default_sqlite_base_dir` reads ``InstanceRef.storage_data`` to tell Dagster's default
  storage from one the user configured.
- **A fix to 1.13.27's pool wait** (:func:`stop_pool_wait_spinning`):
  ``InstanceConcurrencyContext``, whose private ``_pending_claims`` and ``_pending_timeouts``
  the replacement reads.

Replaced by public API in issue 29: the run-worker executor wraps the public
``in_process_executor`` (its ``executor_creation_fn`` and ``config_schema``) instead of
subclassing ``InProcessExecutor`` with ``IN_PROC_CONFIG``, ``RetryMode`` and
``StepDependencyConfig``; ``DagsterExecutionInterruptedError`` is exported by ``dagster``.

The backfill, workspace and event-log names are imported on first use: ``dagster._daemon.backfill``
alone takes about 1.5 s to import, the SQLite event log ~0.3 s, and the code location and the
run launchers, which import this module too, never need them.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import TYPE_CHECKING, Any

from dagster._core.execution.api import execute_run
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    HIDDEN_TAG_PREFIX,
    PARTITION_NAME_TAG,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_backfill_id
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import ConfigurableClassData
from dagster._utils.hosted_user_process import recon_job_from_origin

if TYPE_CHECKING:
    from dagster._core.execution.backfill import (
        BulkActionsFilter,
        BulkActionStatus,
        PartitionBackfill,
    )
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_jobs

CHECKED_VERSIONS = ("1.13.27", "1.13.27")
"""The first and last Dagster versions every name here was checked against (inclusive)."""

DEFAULT_RUN_COORDINATOR = {
    "module": "dagster._core.run_coordinator",
    "class": "DefaultRunCoordinator",
}
"""An instance override: launch each submitted run at once (no queue, no daemon)."""

NOOP_COMPUTE_LOG_MANAGER = {
    "module": "dagster._core.storage.noop_compute_log_manager",
    "class": "NoOpComputeLogManager",
}
"""An instance override: steps' raw stdout and stderr not captured to files."""

_IMPORTED_ON_FIRST_USE = {
    "BulkActionStatus": "dagster._core.execution.backfill",
    "BulkActionsFilter": "dagster._core.execution.backfill",
    "PartitionBackfill": "dagster._core.execution.backfill",
    "WorkspaceProcessContext": "dagster._core.workspace.context",
    "SqliteEventLogStorage": "dagster._core.storage.event_log",
    "SQLITE_BUSY_TIMEOUT_SECONDS": "dagster._core.storage.sqlite",
    "InProcessWorkspaceLoadTarget": "dagster._core.workspace.load_target",
    "execute_backfill_jobs": "dagster._daemon.backfill",
}

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "BACKFILL_ID_TAG",
    "CHECKED_VERSIONS",
    "DEFAULT_RUN_COORDINATOR",
    "HIDDEN_TAG_PREFIX",
    "NOOP_COMPUTE_LOG_MANAGER",
    "PARTITION_NAME_TAG",
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "BulkActionStatus",
    "BulkActionsFilter",
    "CheckRunHealthResult",
    "ConfigurableClass",
    "ConfigurableClassData",
    "InProcessCodeLocationOrigin",
    "InProcessWorkspaceLoadTarget",
    "InstanceConcurrencyContext",
    "InstanceRef",
    "LaunchRunContext",
    "LoadableTargetOrigin",
    "PartitionBackfill",
    "RunLauncher",
    "SqliteEventLogStorage",
    "WorkerStatus",
    "WorkspaceProcessContext",
    "default_sqlite_base_dir",
    "execute_backfill_jobs",
    "execute_run",
    "make_new_backfill_id",
    "pooled_sqlite_storages",
    "recon_job_from_origin",
    "stop_pool_wait_spinning",
]


def __getattr__(name: str) -> Any:
    """The names of :data:`_IMPORTED_ON_FIRST_USE`, imported when first asked for."""
    module = _IMPORTED_ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def default_sqlite_base_dir(ref: InstanceRef) -> str | None:
    """The folder of the instance's storage if it is Dagster's default (SQLite files under
    ``DAGSTER_HOME``); ``None`` if ``dagster.yaml`` configures another (PostgreSQL, ...)."""
    data = ref.storage_data
    if data is None or (data.module_name, data.class_name) != (
        "dagster._core.storage.sqlite_storage",
        "DagsterSqliteStorage",
    ):
        return None
    return data.config_dict["base_dir"]


def pooled_sqlite_storages(base_dir: str) -> dict[str, dict]:
    """Instance overrides: Dagster's default SQLite storages in ``base_dir`` (the folders
    ``DagsterSqliteStorage`` uses), the event log :mod:`pipelines.event_log`'s."""
    history = os.path.join(base_dir, "history")
    return {
        "run_storage": {
            "module": "dagster._core.storage.runs",
            "class": "SqliteRunStorage",
            "config": {"base_dir": history + os.sep},
        },
        "event_log_storage": {
            "module": "pipelines.event_log",
            "class": "PooledSqliteEventLogStorage",
            "config": {"base_dir": os.path.join(history, "runs") + os.sep},
        },
        "schedule_storage": {
            "module": "dagster._core.storage.schedules",
            "class": "SqliteScheduleStorage",
            "config": {"base_dir": os.path.join(base_dir, "schedules")},
        },
    }


def _interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    """Seconds until a step waiting for a pool slot asks the storage again.

    Dagster 1.13.27 returns ``min([0, *deltas])``, never more than 0, so the executor's loop
    never sleeps while a step waits for a slot: one core at ~90% for as long as the wait
    lasts (seen: 20 minutes behind a dead run's slot). The storage is asked only when a
    deadline passes; sleeping until the nearest one costs nothing.
    """
    if not self._pending_claims:
        return 0.0
    deadlines = self._pending_timeouts.values()
    return max(0.0, min((deadline - time.time() for deadline in deadlines), default=0.0))


def stop_pool_wait_spinning() -> None:
    """Make a step that waits for a pool slot sleep until its next check instead of spinning
    (:func:`_interval_to_next_pending_claim_check`). Applies to this process; idempotent."""
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = (  # type: ignore[method-assign]
        _interval_to_next_pending_claim_check
    )
