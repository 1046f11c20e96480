"""The DuckDB warehouse: one file, one writer at a time.

DuckDB allows one writer per file. Outside :meth:`Warehouse.holding`, a connection is opened
for one operation and closed after it; inside, a sync keeps one across its commits and lets it
go at least every ``HOLD_SECONDS``, so that a reader (or another writer) gets the file between
two commits. One that finds the file locked waits and retries (up to ``LOCK_WAIT_SECONDS``)
instead of failing. A batch is inserted straight from its Arrow buffers.

Memory: a connection caps DuckDB at ``BASE_MEMORY_MB``, and DuckDB spills what it can to
disk past that. What it cannot spill is a transaction's large text values: they stay in
memory until the commit (measured with DuckDB 2.0: a page of 1000 conversations carrying 400 MB
of them failed at 1.5 GB in one INSERT, and loads at 600 MB in slices of
``INSERT_SLICE_BYTES``).
So a page or a publish holding ``ROOM_FROM_BYTES`` or more of them first raises the cap to
``BASE_MEMORY_MB`` plus ``LARGE_VALUE_FACTOR`` times their bytes, up to ``max_memory_mb``
(``WAREHOUSE_MAX_MEMORY_MB``; half the machine's memory by default), and checkpoints before
lowering it again. More than that is refused with :class:`WarehouseSizeError` before anything
is written; what was committed stays, so a re-run with more room goes on from there.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
import sqlalchemy as sa
from pydantic import Field

from core import schema
from core.config import duckdb_path
from core.env import Env
from core.lazy import lazy_module
from core.normalize import LARGE_VALUE_BYTES
from resources.files import owner_only
from resources.warehouse.resource import (
    JsonFunctions,
    Warehouse,
    WarehouseBusyError,
    WarehouseError,
    WarehouseSizeError,
)
from resources.warehouse.sql import PAGE_COLUMN, quote
from resources.warehouse.staging import FileStaging

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

LOCK_WAIT_SECONDS = 120.0
HELD_CHECKPOINT_THRESHOLD = "1GB"
"""Inside :meth:`Warehouse.holding`, DuckDB checkpoints when the connection is let go, not
when a commit grows the write-ahead log past its 16 MB default: each checkpoint rewrites the
tables' last, partly filled row groups, so checkpointing every window or two cost about 8 s
of a 40 s sync of 100 000 conversations (measured with the benchmark's dataset)."""
HOLD_SECONDS = 5.0
"""Inside :meth:`Warehouse.holding`, a connection is kept across operations for this long at
most, then let go (and the file checkpointed) after the operation that passes it, so that
other processes (a notebook, another sync) get the file between two commits at least this
often. Every second, as it was, cost as much as a checkpoint every window."""


BASE_MEMORY_MB = 128
LARGE_VALUE_FACTOR = 4
"""Memory per byte of large text values in one transaction. Measured with DuckDB 2.0: about 1.5
for a page of 1000 conversations carrying 400 MB of them, about 4 for one value of 100 or
300 MB (DuckDB's string buffers grow by doubling); 2 was not enough for the one of 300 MB."""
ROOM_FROM_BYTES = 4 << 20
"""Below this many bytes of large values, the base cap is room enough."""
INSERT_SLICE_BYTES = 16 << 20
"""Rows go into DuckDB this many bytes of Arrow at a time (an INSERT of a whole page of large
values took about four times the page, measured)."""


def _memory_mb(large_bytes: int) -> int:
    return BASE_MEMORY_MB + -(-LARGE_VALUE_FACTOR * large_bytes // (1 << 20))


_INTERRUPTED = "Query interrupted"
_OUT_OF_MEMORY = ("out of memory", "failed to pin block", "could not allocate")

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
        number_field=(
            "CASE WHEN json_type({value}, '$.{field}') IN ('DOUBLE', 'UBIGINT', 'BIGINT', "
            "'HUGEINT') THEN TRY_CAST({value} ->> '{field}' AS DOUBLE) END"
        ),
        boolean_field=(
            "CASE WHEN json_type({value}, '$.{field}') = 'BOOLEAN' "
            "THEN CAST({value} ->> '{field}' AS BOOLEAN) END"
        ),
    )

    @property
    def path(self) -> Path:
        return duckdb_path(self.url)

    max_memory_mb: int | None = Field(
        default=None,
        description=f"{Env.WAREHOUSE_MAX_MEMORY_MB}: the most memory one transaction may take "
        "(None: half the machine's)",
    )

    @property
    def memory_ceiling_mb(self) -> int:
        if self.max_memory_mb is not None:
            return self.max_memory_mb
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 // (1 << 20)

    @property
    def schema_ref(self) -> str:
        """The schema as SQL, qualified by the file's catalog: DuckDB names a file's catalog
        after the file (its first non-empty part between dots: ``.hidden.duckdb`` is
        ``hidden``), so ``polyai.duckdb`` holding a schema ``polyai`` would make
        ``polyai.conversations`` ambiguous without it."""
        return f"{quote(self.catalog)}.{quote(self.schema_name)}"

    @property
    def catalog(self) -> str:
        """The name DuckDB gives the file's catalog: its first non-empty part between dots."""
        return next((part for part in self.path.name.split(".") if part), self.path.name)

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def staging(self) -> FileStaging:
        """Pages wait in Arrow IPC files in ``<file>.staging/<schema>/`` beside the file, so
        that a row is written into the file once (:mod:`resources.warehouse.staging`); a
        folder per schema, as each schema has its own loads."""
        folder = self.path.with_name(self.path.name + ".staging")
        return FileStaging(self, folder / self.schema_name)

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Any]:
        """As :meth:`Warehouse.connect`; what a writer creates (the file, its write-ahead
        log, its folder) is readable by its owner only."""
        guard = contextlib.nullcontext() if read_only else owner_only()
        try:
            with guard, super().connect(read_only) as connection:
                yield connection
        except (duckdb.InterruptException, RuntimeError) as exc:
            # Ctrl-C (or a UI's Terminate, which the CLI turns into SIGINT) that arrived while a
            # query ran: DuckDB took the KeyboardInterrupt and raised "Query interrupted" in
            # its place, which would fail the window as an error instead of stopping the run
            # as interrupted.
            if isinstance(exc, RuntimeError) and str(exc) != _INTERRUPTED:
                raise
            raise KeyboardInterrupt(str(exc)) from exc
        except duckdb.Error as exc:
            if not any(words in str(exc).lower() for words in _OUT_OF_MEMORY):
                raise
            first_line = str(exc).strip().splitlines()[0]  # not DuckDB's advice to SET it
            raise WarehouseSizeError(
                f"DuckDB ran out of memory ({first_line}). Raise "
                f"{Env.WAREHOUSE_MAX_MEMORY_MB} (now {self.memory_ceiling_mb:,} MB) or use "
                "PostgreSQL; what was committed is kept."
            ) from exc

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
                if not waitable:
                    raise WarehouseError(f"cannot open warehouse {self.path}: {exc}") from exc
                if time.monotonic() > deadline:
                    raise WarehouseBusyError(
                        f"cannot open warehouse {self.path} within {LOCK_WAIT_SECONDS:g} s: {exc}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        connection.execute("SET TimeZone = 'UTC'")
        with contextlib.suppress(duckdb.CatalogException):  # a new file: begin_ddl creates it
            connection.execute(f"USE {self.schema_ref}")
        connection.execute(f"SET memory_limit = '{self._baseline_mb(connection)}MB'")
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

    def dialect(self) -> sa.engine.Dialect:
        import duckdb_engine  # only to render DDL, when the schema is created or migrated

        return duckdb_engine.Dialect()

    def begin_ddl(self, con: Any) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema_ref}")
        con.execute(f"USE {self.schema_ref}")

    @contextlib.contextmanager
    def room_for(self, con: Any, large_bytes: int, what: str, page: bool) -> Iterator[None]:
        """Raise the cap for the transaction inside, and checkpoint after it while the room is
        still there: the next commit past the checkpoint threshold would otherwise write these
        values out under the base cap, and a checkpoint that fails is FATAL to the file's
        database instance."""
        if large_bytes < ROOM_FROM_BYTES:
            yield
            return
        need_mb = _memory_mb(large_bytes)
        ceiling = self.memory_ceiling_mb
        if need_mb > ceiling:
            smaller = f", a smaller {Env.POLYAI_PAGE_SIZE}" if page else ""
            again = "resumes at this page" if page else "publishes the staged pages"
            raise WarehouseSizeError(
                f"{what}: {large_bytes / (1 << 20):,.0f} MB of text values of "
                f"{LARGE_VALUE_BYTES // 1024} KiB or more, "
                f"which DuckDB holds in memory until the commit: it needs about {need_mb:,} MB, "
                f"more than {Env.WAREHOUSE_MAX_MEMORY_MB} ({ceiling:,} MB). Raise it{smaller}, or "
                f"use PostgreSQL; nothing committed is lost, and a re-run {again}."
            )
        con.execute(f"SET memory_limit = '{need_mb}MB'")
        yield
        con.execute("CHECKPOINT")
        con.execute(f"SET memory_limit = '{self._baseline_mb(con)}MB'")

    def _baseline_mb(self, con: Any) -> int:
        """The cap between large transactions: room to read back the window that holds the
        most large values (the lake reads a window whole), within the ceiling."""
        try:
            row = con.execute("SELECT max(large_value_bytes) FROM sync_state").fetchone()
        except duckdb.Error:  # a new file, or a schema from before the column
            return BASE_MEMORY_MB
        return min(_memory_mb(int(row[0] or 0)), self.memory_ceiling_mb)

    def insert(self, con: Any, table: str, rows: pa.Table, page: int | None = None) -> int:
        extra = f", {int(page)} AS {PAGE_COLUMN}" if page is not None else ""
        step = max(1, rows.num_rows * INSERT_SLICE_BYTES // max(1, rows.nbytes))
        inserted = 0
        for offset in range(0, rows.num_rows, step):
            con.register("batch", rows.slice(offset, step))
            try:
                row = con.execute(
                    f"INSERT INTO {quote(table)} BY NAME SELECT *{extra} FROM batch"
                ).fetchone()
            except duckdb.Error:
                with contextlib.suppress(duckdb.Error):  # an aborted transaction refuses it
                    con.unregister("batch")
                raise
            con.unregister("batch")
            inserted += int(row[0]) if row else 0
        return inserted

    def fetch_arrow(self, con: Any, sql: str, params: dict[str, Any]) -> pa.Table:
        return con.sql(sql, params=params).to_arrow_table()

    def scrub(self) -> None:
        """Rewrite the file without its free blocks: DuckDB leaves a deleted row's bytes in
        the blocks it frees until they are reused. The copy is made while this connection
        holds the file (no other process can write it meanwhile), with DuckDB's memory cap
        raised to the ceiling, given the file's owner and mode, and renamed over it before the
        connection is let go; a process waiting for the file then opens the copy."""
        fresh = self.path.with_name(f".{self.path.name}.scrub")
        fresh.unlink(missing_ok=True)
        with self.connect() as con, owner_only():
            con.execute("CHECKPOINT")  # nothing left in the write-ahead log
            con.execute(f"SET memory_limit = '{self.memory_ceiling_mb}MB'")
            database = con.execute("SELECT current_database()").fetchone()[0]
            con.execute(f"ATTACH {_literal(str(fresh))} AS _scrubbed")
            try:
                con.execute(f"COPY FROM DATABASE {quote(database)} TO _scrubbed")
            finally:
                con.execute("DETACH _scrubbed")
            old = self.path.stat()
            os.chmod(fresh, old.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.chown(fresh, old.st_uid, old.st_gid)
            os.replace(fresh, self.path)
        self._release()  # a connection held across this (holding()) is to the old file


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
