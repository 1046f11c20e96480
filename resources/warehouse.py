"""The warehouse, as a Dagster resource: a DuckDB file holding the tables of :mod:`core.schema`.

A window is loaded in two steps. Each page is *staged* (appended to a staging table under the
load's id) in its own short write transaction; when the last page is in, the window is
*published*: in one transaction its old rows are deleted and the staged rows inserted. Readers
therefore see the old window or the new one, never a mix, and loading a window twice leaves
the same rows as loading it once.

DuckDB allows one writer per file, so write connections are opened only to commit and closed
at once; a writer that finds the file locked by another process waits and retries.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import duckdb_engine
import pandas as pd
import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field

from core import schema
from core.config import duckdb_path
from core.normalize import Batch
from core.windows import Scope, Window

STAGE_PREFIX = "_stage_"
PAGE_COLUMN = "_page"
LOCK_WAIT_SECONDS = 120.0


class WarehouseError(Exception):
    """The warehouse could not be opened or written."""


@dataclass(frozen=True)
class PublishResult:
    """Rows a published window now holds, per table."""

    rows: dict[str, int]


class DuckDBWarehouse(ConfigurableResource):
    """An analytics warehouse in one DuckDB file."""

    url: str = Field(description="duckdb:///path/to/file.duckdb")
    schema_name: str = Field(default="polyai", description="SQL schema holding the tables")

    @property
    def path(self) -> Path:
        return duckdb_path(self.url)

    def _name(self, table: str) -> str:
        return f'"{self.schema_name}"."{table}"'

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file, opened now and closed on exit.

        Another process holding the write lock is waited for (bounded), not failed on.
        """
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.05
        while True:
            try:
                connection = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open warehouse {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            connection.execute("SET TimeZone = 'UTC'")
            yield connection
        finally:
            connection.close()

    def ensure_schema(self) -> None:
        """Create the schema, tables and staging tables if they do not exist yet."""
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"')
            for statement in schema.create_statements(self.schema_name, duckdb_dialect()):
                con.execute(statement)
            for table in schema.WINDOW_TABLES:
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._name(STAGE_PREFIX + table.name)} "
                    f"AS SELECT *, 0 AS {PAGE_COLUMN} FROM {self._name(table.name)} "
                    "WITH NO DATA"
                )
            con.execute("COMMIT")

    def stage(self, load_id: str, page: int, batch: Batch) -> None:
        """Append one page's rows to the staging tables, in one short transaction."""
        with self.connect() as con:
            con.execute("BEGIN")
            for table, rows in batch.tables().items():
                con.register("batch", rows)
                con.execute(
                    f"INSERT INTO {self._name(STAGE_PREFIX + table)} BY NAME "
                    f"SELECT *, {int(page)} AS {PAGE_COLUMN} FROM batch"
                )
                con.unregister("batch")
            con.execute("COMMIT")

    def publish(self, load_id: str, scope: Scope, window: Window) -> PublishResult:
        """Replace the scope's window with what ``load_id`` staged, atomically."""
        conv, turns = self._name("conversations"), self._name("turns")
        stage_conv = self._name(STAGE_PREFIX + "conversations")
        stage_turns = self._name(STAGE_PREFIX + "turns")
        in_window = (
            "environment = $env AND channel = $channel "
            "AND started_at >= $start AND started_at < $end"
        )
        window_params = {
            "env": scope.environment,
            "channel": scope.channel,
            "start": window.start,
            "end": window.end,
        }
        params = {**window_params, "load": load_id}
        conv_cols = ", ".join(f'"{c.name}"' for c in schema.conversations.columns)
        turn_cols = ", ".join(f'"{c.name}"' for c in schema.turns.columns)
        with self.connect() as con:
            con.execute("BEGIN")
            # Old rows of the window, and any row of a conversation this load brings again
            # (so a conversation is never held twice, whichever window first saw it).
            replaced = (
                f"SELECT id FROM {conv} WHERE {in_window} "
                f"UNION SELECT id FROM {stage_conv} WHERE load_id = $load"
            )
            con.execute(f"DELETE FROM {turns} WHERE conversation_id IN ({replaced})", params)
            con.execute(f"DELETE FROM {conv} WHERE id IN ({replaced})", params)
            # A conversation served on two pages keeps its latest copy.
            con.execute(
                f"INSERT INTO {conv} ({conv_cols}) SELECT {conv_cols} FROM {stage_conv} "
                f"WHERE load_id = $load QUALIFY row_number() OVER "
                f"(PARTITION BY id ORDER BY {PAGE_COLUMN} DESC) = 1",
                {"load": load_id},
            )
            con.execute(
                f"INSERT INTO {turns} ({turn_cols}) SELECT {turn_cols} FROM {stage_turns} t "
                f"WHERE load_id = $load QUALIFY {PAGE_COLUMN} = max({PAGE_COLUMN}) OVER "
                f"(PARTITION BY conversation_id)",
                {"load": load_id},
            )
            for table in (stage_conv, stage_turns):
                con.execute(f"DELETE FROM {table} WHERE load_id = $load", {"load": load_id})
            rows = {
                "conversations": _count(
                    con, f"SELECT count(*) FROM {conv} WHERE {in_window}", window_params
                ),
                "turns": _count(
                    con,
                    f"SELECT count(*) FROM {turns} WHERE conversation_id IN "
                    f"(SELECT id FROM {conv} WHERE {in_window})",
                    window_params,
                ),
            }
            con.execute("COMMIT")
        return PublishResult(rows)

    def discard(self, load_id: str) -> None:
        """Drop what a failed load staged."""
        with self.connect() as con:
            for table in schema.WINDOW_TABLES:
                con.execute(
                    f"DELETE FROM {self._name(STAGE_PREFIX + table.name)} WHERE load_id = $load",
                    {"load": load_id},
                )

    def row_counts(
        self, where: str = "TRUE", params: dict[str, object] | None = None
    ) -> dict[str, int]:
        """Rows per window table matching ``where`` (0 for a warehouse not created yet)."""
        if not self.path.exists():
            return {table.name: 0 for table in schema.WINDOW_TABLES}
        with self.connect(read_only=True) as con:
            return {
                table.name: _count(
                    con,
                    f"SELECT count(*) FROM {self._name(table.name)} WHERE {where}",
                    params or {},
                )
                for table in schema.WINDOW_TABLES
            }

    def read_table(self, table: str, where: str = "TRUE") -> pd.DataFrame:
        """A whole table (or the rows matching ``where``) as a DataFrame."""
        with self.connect(read_only=True) as con:
            sql = f"SELECT * FROM {self._name(table)} WHERE {where}"
            return con.sql(sql).to_arrow_table().to_pandas()


def duckdb_dialect() -> sa.engine.Dialect:
    """SQLAlchemy's DuckDB dialect, to render the schema's DDL for DuckDB."""
    return duckdb_engine.Dialect()


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0
