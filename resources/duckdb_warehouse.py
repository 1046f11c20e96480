"""The DuckDB warehouse: one file, one writer at a time.

DuckDB allows one writer per file. Outside :meth:`Warehouse.holding`, a connection is opened
for one operation and closed after it; inside, a sync keeps one across its commits and lets it
go at least every ``HOLD_SECONDS``, so that a reader (or another writer) gets the file between
two commits. One that finds the file locked waits and retries (up to ``LOCK_WAIT_SECONDS``)
instead of failing. A batch is inserted straight from its Arrow buffers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from core import schema
from core.config import duckdb_path
from resources.files import owner_only
from resources.warehouse import (
    PAGE_COLUMN,
    JsonFunctions,
    Warehouse,
    WarehouseError,
    quote,
)

LOCK_WAIT_SECONDS = 120.0
HELD_CHECKPOINT_THRESHOLD = "64MB"
HOLD_SECONDS = 1.0
"""Inside :meth:`Warehouse.holding`, a connection is kept across operations for this long at
most, then let go after the operation that passes it, so that other processes (a notebook,
another sync) get the file between two commits at least this often."""


_HEADERS_BYTES = 3 * 4096
"""DuckDB's main header and its two database headers, written when a file is created."""


class DuckDBWarehouse(Warehouse):
    """An analytics warehouse in one DuckDB file."""

    engine: ClassVar[str] = "duckdb"
    hold_seconds: ClassVar[float | None] = HOLD_SECONDS
    # The per-turn tables' primary-key indexes cost more than the rest of their load; the
    # load guarantees their keys and the unique_turn_keys check verifies them.
    unenforced_keys: ClassVar[tuple[sa.Table, ...]] = schema.CHILD_TABLES
    json: ClassVar[JsonFunctions] = JsonFunctions(
        object_agg="json_group_object({key}, {value})",
        array_length="json_array_length({value})",
    )

    @property
    def path(self) -> Path:
        return duckdb_path(self.url)

    @property
    def schema_ref(self) -> str:
        """The schema as SQL, qualified by the file's catalog: DuckDB names a file's catalog
        after the file (its first non-empty part between dots: ``.hidden.duckdb`` is
        ``hidden``), so ``polyai.duckdb`` holding a schema ``polyai`` would make
        ``polyai.conversations`` ambiguous without it."""
        catalog = next((part for part in self.path.name.split(".") if part), self.path.name)
        return f"{quote(catalog)}.{quote(self.schema_name)}"

    def exists(self) -> bool:
        return self.path.exists()

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        """As :meth:`Warehouse.connect`; what a writer creates (the file, its write-ahead
        log, its folder) is readable by its owner only."""
        guard = contextlib.nullcontext() if read_only else owner_only()
        with guard, super().connect(read_only) as connection:
            yield connection

    def _open(self, read_only: bool, held: bool) -> duckdb.DuckDBPyConnection:
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.01
        while True:
            try:
                connection = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                waitable = "lock" in str(exc).lower() or self._being_created(exc)
                if not waitable or time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open warehouse {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET memory_limit = '128MB'")
        if held:
            # Checkpoint when the connection is let go, not at every commit that grows the
            # write-ahead log past DuckDB's 16 MB default (a page of raw JSON does): staged
            # rows published before then are never written to the file at all.
            connection.execute(f"SET checkpoint_threshold = '{HELD_CHECKPOINT_THRESHOLD}'")
        return connection

    def _being_created(self, exc: duckdb.IOException) -> bool:
        """Whether another process is creating the file right now: DuckDB refuses a file
        shorter than its headers as "not a valid DuckDB database file" until the creator has
        written them (two first syncs on one new file race there). An older or complete file
        that DuckDB refuses is not waited for."""
        if "not a valid duckdb database file" not in str(exc).lower():
            return False
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return True
        return stat.st_size < _HEADERS_BYTES and time.time() - stat.st_mtime < 10

    def _dialect(self) -> sa.engine.Dialect:
        import duckdb_engine  # only to render DDL, when the schema is created or migrated

        return duckdb_engine.Dialect()

    def _begin_ddl(self, con: Any) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema_ref}")
        con.execute(f"USE {self.schema_ref}")

    def _insert(self, con: Any, table: str, rows: pa.Table, page: int | None = None) -> int:
        extra = f", {int(page)} AS {PAGE_COLUMN}" if page is not None else ""
        con.register("batch", rows)
        try:
            row = con.execute(
                f"INSERT INTO {self.table_ref(table)} BY NAME SELECT *{extra} FROM batch"
            ).fetchone()
        finally:
            con.unregister("batch")
        return int(row[0]) if row else 0

    def _fetch_arrow(self, con: Any, sql: str, params: dict[str, Any]) -> pa.Table:
        return con.sql(sql, params=params).to_arrow_table()
