"""The sync's partitions: UTC days x environment.channel scopes, from configuration."""

from __future__ import annotations

from datetime import date

from dagster import (
    DailyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from assets.conversations import DATE_DIMENSION, SCOPE_DIMENSION
from core.config import Settings
from core.windows import Scope


def build_partitions(settings: Settings) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition(
        {
            DATE_DIMENSION: DailyPartitionsDefinition(
                start_date=settings.sync_start.isoformat(), timezone="UTC"
            ),
            SCOPE_DIMENSION: StaticPartitionsDefinition([s.key for s in settings.scopes]),
        }
    )


def partition_key(day: date, scope: Scope) -> MultiPartitionKey:
    return MultiPartitionKey({DATE_DIMENSION: day.isoformat(), SCOPE_DIMENSION: scope.key})
