"""Retention: windows older than ``POLYAI_RETENTION_DAYS`` removed from the warehouse and the
lake, and what was removed recorded (``retention_removals``, and the caller's metadata).

The cutoff is a day boundary (UTC): with 30 days, a run on 2026-03-31 keeps the windows of
2026-03-01 and later and removes every window before. A lake file goes with its folder's date.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from core import schema
from resources.lake import ParquetLake
from resources.warehouse import Warehouse
from resources.warehouse.removal import record_lake_removals, remove_before
from sync.forget import LAKE_CSV_TABLES, remove_stale_temporaries


def retention_cutoff(days: int, today: date) -> datetime:
    """The first moment kept: midnight UTC ``days`` days before ``today``."""
    return datetime.combine(today - timedelta(days=days), time(), tzinfo=UTC)


def apply_retention(
    warehouse: Warehouse, lake: ParquetLake, days: int, today: date | None = None
) -> dict[str, Any]:
    """Remove the windows before the cutoff everywhere; what was removed, as metadata."""
    cutoff = retention_cutoff(days, today or datetime.now(UTC).date())
    removed = remove_before(warehouse, cutoff)
    files = _remove_lake_files(lake, cutoff)
    record_lake_removals(warehouse, removed, files)
    per_table: Counter[str] = Counter()
    for (_, _, _, table), rows in removed.rows.items():
        per_table[table] += rows
    windows = {key[:3] for key in removed.rows} | set(files)
    return {
        "removal_id": removed.removal_id,
        "cutoff": cutoff.isoformat(),
        "retention_days": days,
        "windows_removed": len(windows),
        "lake_files_removed": sum(files.values()),
        **{f"rows_{t.name}": per_table[t.name] for t in schema.WINDOW_TABLES},
        **{
            f"rows_{table}": rows
            for table, rows in sorted(per_table.items())
            if table not in {t.name for t in schema.WINDOW_TABLES}
        },
    }


def _remove_lake_files(lake: ParquetLake, cutoff: datetime) -> dict[tuple[str, str, datetime], int]:
    """Remove the lake's files of days before the cutoff; files removed per window."""
    removed: Counter[tuple[str, str, datetime]] = Counter()
    for table in (*(t.name for t in schema.WINDOW_TABLES), *LAKE_CSV_TABLES):
        for path in lake.files(table):
            environment, channel, day = lake.partition_of(path)
            if day < cutoff.date():
                lake.remove(path)
                removed[(environment, channel, _window_start(day, path))] += 1
    remove_stale_temporaries(lake)  # a killed export's leftover copies, whatever their day
    return dict(removed)


def _window_start(day: date, path: str) -> datetime:
    """A lake file's window start: its day, and its hour for an hourly window (``HH00.*``)."""
    name = path.rsplit("/", 1)[-1].split(".", 1)[0]
    hour = int(name[:2]) if name[:4].isdigit() else 0
    return datetime.combine(day, time(hour), tzinfo=UTC)
