"""The sync's partitions: UTC days (or hours, with POLYAI_WINDOW=hourly) x environment.channel
scopes, from configuration."""

from __future__ import annotations

from datetime import date

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from core.config import Settings
from core.names import DATE_DIMENSION, SCOPE_DIMENSION
from core.windows import Scope, Window, daily_window, window_key


def build_partitions(settings: Settings) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition(
        {
            DATE_DIMENSION: (
                HourlyPartitionsDefinition(
                    start_date=f"{settings.sync_start.isoformat()}-00:00", timezone="UTC"
                )
                if settings.granularity == "hourly"
                else DailyPartitionsDefinition(
                    start_date=settings.sync_start.isoformat(), timezone="UTC"
                )
            ),
            SCOPE_DIMENSION: StaticPartitionsDefinition([s.key for s in settings.scopes]),
        }
    )


def partition_key(window: Window | date, scope: Scope) -> MultiPartitionKey:
    """The partition of one scope's window (a date stands for its daily window)."""
    if isinstance(window, date):
        window = daily_window(window)
    return MultiPartitionKey({DATE_DIMENSION: window_key(window), SCOPE_DIMENSION: scope.key})
