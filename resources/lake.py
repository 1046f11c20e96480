"""The Parquet lake: the window tables exported as hive-style folders, for lake engines.

    <root>/<table>/environment=<env>/channel=<channel>/date=<YYYY-MM-DD>/<window>.parquet

One file per window and table (``day.parquet`` for a daily window, ``HH00.parquet`` for an
hourly one). A re-synced window's files are written beside the old ones and renamed over them,
so a reader sees the old file or the new one, never half of one. DuckDB
(``read_parquet(..., hive_partitioning = true)``), Spark and Trino prune on the folder keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from dagster import ConfigurableResource
from pydantic import Field

from core import schema
from core.env import Env
from core.windows import Scope, Window
from resources.files import owner_only
from resources.warehouse import Warehouse

# The folder keys hold these; the files do not repeat them.
_FOLDER_COLUMNS = ("environment", "channel")


class ParquetLake(ConfigurableResource):
    """A folder (local path) that receives one Parquet file per window and table."""

    root: str = Field(description=f"{Env.LAKE_URL}: a local folder, or file:///path")

    @property
    def path(self) -> Path:
        return Path(self.root.removeprefix("file://"))

    def window_file(self, table: str, scope: Scope, window: Window) -> Path:
        hours = (window.end - window.start).total_seconds() / 3600
        name = "day.parquet" if hours == 24 else f"{window.start:%H%M}.parquet"
        return (
            self.path
            / table
            / f"environment={scope.environment}"
            / f"channel={scope.channel}"
            / f"date={window.start:%Y-%m-%d}"
            / name
        )

    def write_csv(self, table: str, scope: Scope, window: Window, rows: pd.DataFrame) -> Path:
        """Write one window's rows of ``table`` as CSV in the window's folder, atomically."""
        final = self.window_file(table, scope, window).with_suffix(".csv")
        safe = rows.apply(lambda c: c.map(_inert) if c.dtype == object or c.dtype == "str" else c)
        _write_atomically(final, lambda path: safe.to_csv(path, index=False))
        return final

    def export_window(self, warehouse: Warehouse, scope: Scope, window: Window) -> dict[str, int]:
        """Write the window's rows of every window table; rows written per table."""
        written = {}
        for table in schema.WINDOW_TABLES:
            rows = warehouse.window_rows(table, scope, window)
            rows = rows.drop_columns([c for c in _FOLDER_COLUMNS if c in rows.column_names])
            final = self.window_file(table.name, scope, window)
            _write_atomically(final, lambda path, rows=rows: pq.write_table(rows, path))
            written[table.name] = rows.num_rows
        return written


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(...)``), with a ``'``
    in front so it shows as the text it is (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _write_atomically(final: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``final``, then rename it over ``final`` (atomic on
    one file system: a reader sees the old file or the new one). Files and folders are
    readable by their owner only."""
    with owner_only():
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            write(temporary)
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
