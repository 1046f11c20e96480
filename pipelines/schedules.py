"""The nightly sync: yesterday for every scope, plus the lookback that lets late and unfinished
conversations land. It runs by default whenever the Dagster daemon runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    schedule,
)

from core.config import Settings
from core.windows import nightly_windows, windows_of_days
from pipelines.partitions import partition_key
from resources.warehouse import Warehouse
from resources.warehouse.state import windows_with_in_progress

NIGHTLY = "polyai_nightly"


def build_nightly_schedule(job: Any, settings: Settings) -> ScheduleDefinition:
    """``job`` is the sync's asset job (what ``define_asset_job`` returns)."""

    @schedule(
        name=NIGHTLY,
        job=job,
        cron_schedule=f"0 {settings.schedule_hour} * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            f"Every night at {settings.schedule_hour:02d}:00 UTC: yesterday for every scope, "
            f"the {settings.lookback_days} days before it again, and any window that still "
            "held in-progress conversations."
        ),
    )
    def polyai_nightly(
        context: ScheduleEvaluationContext, warehouse: Warehouse
    ) -> Iterator[RunRequest]:
        today = context.scheduled_execution_time.date()
        windows = nightly_windows(
            today,
            settings.scopes,
            settings.lookback_days,
            windows_with_in_progress(warehouse),
            settings.sync_start,
        )
        for day, scope in windows:
            for window in windows_of_days([day], settings.granularity):
                key = partition_key(window, scope)
                yield RunRequest(run_key=f"{NIGHTLY}:{today}:{key}", partition_key=key)

    return polyai_nightly
