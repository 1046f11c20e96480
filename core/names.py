"""The names the Dagster assets declare and the pipelines look up, each written once: groups,
the pool, partition dimensions, the sync step and its landing flag, asset key paths, checks,
jobs and the sensor. Plain strings (no Dagster here): :mod:`assets.keys` makes asset keys of
them, and :mod:`pipelines` finds runs, events and slots by them."""

from typing import Final

GROUP: Final = "polyai"
ANALYTICS_GROUP: Final = "polyai_analytics"
OWNER: Final = "team:data-platform"
POOL: Final = "polyai_sync"
"""Concurrency pool of the sync op: its limit (pipelines/dagster.yaml) bounds parallel syncs."""

DATE_DIMENSION: Final = "date"
SCOPE_DIMENSION: Final = "scope"

SYNC_STEP: Final = "polyai_conversations_sync"
WINDOW_LANDED: Final = "window_landed"
"""Metadata flag of the observation a window's landing records (progress, read by the CLI)."""
WINDOW_FAILED: Final = "window_failed"
"""Metadata of the observation a window's own failure records: the error, and what a re-run
does (the CLI reports the window failed with it, as it happens)."""
CONVERSATIONS: Final = ("polyai", "conversations")
"""The conversations table's asset key path (the sync step's landings are observed on it)."""

WINDOW_CHECKS: Final = "polyai_window_checks"
FRESHNESS_CHECK: Final = "every_scope_is_fresh"

SYNC_JOB: Final = "polyai_sync"
CHECK_JOB: Final = "polyai_check_windows"
FRESHNESS_JOB: Final = "polyai_scope_freshness"
DOWNSTREAM_SENSOR: Final = "polyai_downstream"
ALERT_SENSOR: Final = "polyai_failure_alerts"
"""Posts failed runs, failed ERROR checks and recoveries to the alert webhook (when set)."""
RETENTION_JOB: Final = "polyai_retention"
"""The nightly retention run (when POLYAI_RETENTION_DAYS is set), and its schedule."""
