"""The warehouse, as a Dagster resource: a DuckDB file holding the tables of :mod:`core.schema`.

A window is loaded in two steps. Each page is *staged* (appended to staging tables under the
load's id) in one short transaction that also records the page's cursor in ``sync_state`` and
its quarantined records in ``quarantine``: a run that dies resumes from the last committed
cursor. When the last page is in, the window is *published*: in one transaction its old rows
are deleted and the staged rows inserted, so readers see the old window or the new one, never
a mix, and loading a window twice leaves the same rows as loading it once.

DuckDB allows one writer per file. Outside :meth:`DuckDBWarehouse.holding`, a connection is
opened for one operation and closed after it; inside, a sync keeps one across its commits and
lets it go at least every ``HOLD_SECONDS``, so that a reader (or another writer) gets the file
between two commits. One that finds the file locked waits and retries (up to
``LOCK_WAIT_SECONDS``) instead of failing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from core import schema
from core.config import duckdb_path
from core.normalize import Batch
from core.windows import Scope, Window

if TYPE_CHECKING:  # imported where used: a sync needs neither (~100 MB of a process's RSS)
    import pandas as pd

STAGE_PREFIX = "_stage_"
PAGE_COLUMN = "_page"
LOCK_WAIT_SECONDS = 120.0
HELD_CHECKPOINT_THRESHOLD = "64MB"
HOLD_SECONDS = 1.0
"""Inside :meth:`DuckDBWarehouse.holding`, a connection is kept across operations for this
long at most, then let go after the operation that passes it, so that other processes (a
notebook, another sync) get the file between two commits at least this often."""


class WarehouseError(Exception):
    """The warehouse could not be opened or written."""


@dataclass(frozen=True)
class WindowKey:
    """The sync state's key: one scope's window in one account and project."""

    account_id: str
    project_id: str
    scope: Scope
    window: Window

    def params(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "project": self.project_id,
            "env": self.scope.environment,
            "channel": self.scope.channel,
            "start": self.window.start,
        }


@dataclass(frozen=True)
class SyncState:
    """Where a window's load stands, as last committed."""

    status: str  # running: pages being staged; staged: all pages in; complete: published
    load_id: str
    cursor: str | None
    pages: int
    conversations: int
    quarantined: int
    in_progress: int


@dataclass(frozen=True)
class PublishResult:
    """Rows a published window now holds, per table."""

    rows: dict[str, int]


_STATE_WHERE = (
    "account_id = $account AND project_id = $project AND environment = $env "
    "AND channel = $channel AND window_start = $start"
)


_ANALYTICS_WINDOW = "environment = $env AND channel = $channel AND window_start = $start"
"""One scope's window of an analytics table (they are keyed by it)."""


class DuckDBWarehouse(ConfigurableResource):
    """An analytics warehouse in one DuckDB file."""

    url: str = Field(description="duckdb:///path/to/file.duckdb")
    schema_name: str = Field(default="polyai", description="SQL schema holding the tables")
    _holding: int = PrivateAttr(default=0)
    _held: duckdb.DuckDBPyConnection | None = PrivateAttr(default=None)
    _held_since: float = PrivateAttr(default=0.0)

    @property
    def path(self) -> Path:
        return duckdb_path(self.url)

    @property
    def schema_ref(self) -> str:
        """The schema as SQL, qualified by the file's catalog: DuckDB names a file's catalog
        after the file (up to its first dot), so ``polyai.duckdb`` holding a schema ``polyai``
        would make ``polyai.conversations`` ambiguous without it."""
        return f"{quote(self.path.name.split('.')[0])}.{quote(self.schema_name)}"

    def table_ref(self, table: str) -> str:
        """A table of the warehouse schema, as SQL."""
        return f"{self.schema_ref}.{quote(table)}"

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Keep one connection across the operations inside, for up to ``HOLD_SECONDS`` at a
        time: a window's pages then cost one open and one checkpoint a second, not one a page,
        and rows staged and published within that second never reach the file twice. Every
        operation still commits on its own."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                self._release()

    def _release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.close()

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file, opened now and closed on exit (inside :meth:`holding`,
        the held one, read-write).

        Another process holding the lock is waited for (bounded), not failed on.
        """
        if not self._holding:
            connection = self._open(read_only)
            try:
                yield connection
            finally:
                connection.close()
            return
        if self._held is None:
            self._held = self._open(read_only=False)
            # Checkpoint when the connection is let go, not at every commit that grows the
            # write-ahead log past DuckDB's 16 MB default (a page of raw JSON does): staged
            # rows published before then are never written to the file at all.
            self._held.execute(f"SET checkpoint_threshold = '{HELD_CHECKPOINT_THRESHOLD}'")
            self._held_since = time.monotonic()
        try:
            yield self._held
        except BaseException:
            self._release()  # and with it any transaction the failure left open
            raise
        if time.monotonic() - self._held_since > HOLD_SECONDS:
            self._release()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.01
        while True:
            try:
                connection = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open warehouse {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET memory_limit = '128MB'")
        return connection

    # --- schema -----------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the schema and tables, or add the columns a newer version declares.

        Existing rows are kept: a column added by a later version is added in place (null in
        old rows), and the staging tables follow their tables.
        """
        if self._schema_is_complete():
            return  # the common case: every window sync calls this
        dialect = duckdb_dialect()
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema_ref}")
            con.execute(f"USE {self.schema_ref}")
            for statement in schema.create_statements(dialect, schema.CHILD_TABLES):
                con.execute(statement)
            for table in schema.WINDOW_TABLES:
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table_ref(STAGE_PREFIX + table.name)} "
                    f"AS SELECT *, 0 AS {PAGE_COLUMN} FROM {self.table_ref(table.name)} "
                    "WITH NO DATA"
                )
            for table in schema.metadata.sorted_tables:
                targets = [table.name]
                if table in schema.WINDOW_TABLES:
                    targets.append(STAGE_PREFIX + table.name)
                for target in targets:
                    self._add_missing_columns(con, table, target, dialect)
            con.execute("COMMIT")

    def _schema_is_complete(self) -> bool:
        """Whether every table (and staging table) has every declared column: one read-only
        query, against the ~80 ms of taking the write lock to run the DDL."""
        expected = {(t.name, c.name) for t in schema.metadata.sorted_tables for c in t.columns}
        expected |= {
            (STAGE_PREFIX + t.name, c.name) for t in schema.WINDOW_TABLES for c in t.columns
        }
        if not self.path.exists():
            return False
        with self.connect(read_only=True) as con:
            present = set(
                con.execute(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = $schema",
                    {"schema": self.schema_name},
                ).fetchall()
            )
        return expected <= present

    def _add_missing_columns(
        self,
        con: duckdb.DuckDBPyConnection,
        table: sa.Table,
        target: str,
        dialect: sa.engine.Dialect,
    ) -> None:
        existing = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = $schema AND table_name = $table",
                {"schema": self.schema_name, "table": target},
            ).fetchall()
        }
        for column in table.columns:
            if column.name not in existing:
                kind = column.type.compile(dialect=dialect)
                con.execute(
                    f"ALTER TABLE {self.table_ref(target)} ADD COLUMN {quote(column.name)} {kind}"
                )

    # --- sync state ---------------------------------------------------------------------

    def read_state(self, key: WindowKey) -> SyncState | None:
        """The window's last committed state, or None if it was never synced."""
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT status, load_id, cursor, pages, conversations, quarantined, in_progress "
                f"FROM {self.table_ref('sync_state')} WHERE {_STATE_WHERE}",
                key.params(),
            ).fetchone()
        return SyncState(*row) if row else None

    def begin_load(self, key: WindowKey, load_id: str) -> None:
        """Start a fresh load of the window, dropping whatever an earlier one staged."""
        now = datetime.now(UTC)
        with self.connect() as con:
            con.execute("BEGIN")
            self._discard_staged(con, key)
            con.execute(
                f"DELETE FROM {self.table_ref('sync_state')} WHERE {_STATE_WHERE}", key.params()
            )
            con.execute(
                f"INSERT INTO {self.table_ref('sync_state')} VALUES ($account, $project, $env, "
                "$channel, $start, $end, 'running', $load, NULL, 0, 0, 0, 0, $now, $now, NULL)",
                {**key.params(), "end": key.window.end, "load": load_id, "now": now},
            )
            con.execute("COMMIT")

    def _discard_staged(self, con: duckdb.DuckDBPyConnection, key: WindowKey) -> None:
        previous = con.execute(
            f"SELECT load_id FROM {self.table_ref('sync_state')} WHERE {_STATE_WHERE}", key.params()
        ).fetchone()
        if previous:
            for table in schema.WINDOW_TABLES:
                con.execute(
                    f"DELETE FROM {self.table_ref(STAGE_PREFIX + table.name)} "
                    "WHERE load_id = $load",
                    {"load": previous[0]},
                )

    def stage(self, key: WindowKey, load_id: str, page: int, batch: Batch,
              next_cursor: str | None) -> None:  # fmt: skip
        """Commit one page: its rows, its quarantined records and the cursor after it."""
        now = datetime.now(UTC)
        with self.connect() as con:
            con.execute("BEGIN")
            for table, rows in batch.tables.items():
                if rows.num_rows:
                    self._insert(con, STAGE_PREFIX + table, rows, {PAGE_COLUMN: int(page)})
            if batch.quarantined:
                self._insert(con, "quarantine", _quarantine_rows(key, load_id, page, batch, now))
            updated = con.execute(
                f"UPDATE {self.table_ref('sync_state')} SET cursor = $cursor, pages = $page, "
                "conversations = conversations + $rows, quarantined = quarantined + $bad, "
                "in_progress = in_progress + $ongoing, updated_at = $now, "
                "status = CASE WHEN $cursor IS NULL THEN 'staged' ELSE 'running' END "
                f"WHERE {_STATE_WHERE} AND load_id = $load AND status = 'running' "
                "RETURNING 1",
                {
                    **key.params(),
                    "cursor": next_cursor,
                    "page": page,
                    "rows": batch.conversations.num_rows,
                    "bad": len(batch.quarantined),
                    "ongoing": batch.in_progress,
                    "now": now,
                    "load": load_id,
                },
            ).fetchall()
            if not updated:
                con.execute("ROLLBACK")
                raise WarehouseError(
                    f"load {load_id} no longer owns {key.scope.key} {key.window.start:%Y-%m-%d}: "
                    "another sync of the same window took it over"
                )
            con.execute("COMMIT")

    def _insert(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        rows: pa.Table,
        constants: dict[str, int] | None = None,
    ) -> None:
        extra = "".join(f", {value} AS {name}" for name, value in (constants or {}).items())
        con.register("batch", rows)
        try:
            con.execute(f"INSERT INTO {self.table_ref(table)} BY NAME SELECT *{extra} FROM batch")
        finally:
            con.unregister("batch")

    def publish(self, key: WindowKey, load_id: str) -> PublishResult:
        """Replace the window with what ``load_id`` staged, atomically, and mark it complete."""
        scope, window = key.scope, key.window
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
        load = {"load": load_id}
        conv = self.table_ref("conversations")
        stage_conv = self.table_ref(STAGE_PREFIX + "conversations")
        with self.connect() as con:
            con.execute("BEGIN")
            # Old rows of the window, and any row of a conversation this load brings again
            # (so a conversation is never held twice, whichever window first saw it).
            con.execute(
                "CREATE TEMP TABLE replaced AS "
                f"SELECT id FROM {conv} WHERE {in_window} "
                f"UNION SELECT id FROM {stage_conv} WHERE load_id = $load",
                {**window_params, **load},
            )
            for table in schema.CHILD_TABLES:
                con.execute(
                    f"DELETE FROM {self.table_ref(table.name)} "
                    "WHERE conversation_id IN (SELECT id FROM replaced)"
                )
            con.execute(f"DELETE FROM {conv} WHERE id IN (SELECT id FROM replaced)")
            # A conversation served on two pages keeps its latest copy, children included.
            # What the window holds now is what was inserted: its old rows are gone, and the
            # API served only conversations that started in it.
            # Only then is a window function needed (it holds the window's rows in memory):
            # the common case streams.
            served_twice = _count(
                con,
                f"SELECT count(*) - count(DISTINCT id) FROM {stage_conv} WHERE load_id = $load",
                load,
            )
            columns = _column_list(schema.conversations)
            latest = (
                f" QUALIFY row_number() OVER (PARTITION BY id ORDER BY {PAGE_COLUMN} DESC) = 1"
                if served_twice
                else ""
            )
            rows = {
                "conversations": _count(
                    con,
                    f"INSERT INTO {conv} ({columns}) SELECT {columns} FROM {stage_conv} "
                    f"WHERE load_id = $load{latest}",
                    load,
                )
            }
            latest = (
                f" QUALIFY {PAGE_COLUMN} = max({PAGE_COLUMN}) OVER (PARTITION BY conversation_id)"
                if served_twice
                else ""
            )
            for table in schema.CHILD_TABLES:
                columns = _column_list(table)
                rows[table.name] = _count(
                    con,
                    f"INSERT INTO {self.table_ref(table.name)} ({columns}) SELECT {columns} "
                    f"FROM {self.table_ref(STAGE_PREFIX + table.name)} "
                    f"WHERE load_id = $load{latest}",
                    load,
                )
            for table in schema.WINDOW_TABLES:
                con.execute(
                    f"DELETE FROM {self.table_ref(STAGE_PREFIX + table.name)} "
                    "WHERE load_id = $load",
                    load,
                )
            con.execute("DROP TABLE replaced")
            con.execute(
                f"UPDATE {self.table_ref('sync_state')} SET status = 'complete', cursor = NULL, "
                f"updated_at = $now, completed_at = $now WHERE {_STATE_WHERE}",
                {**key.params(), "now": datetime.now(UTC)},
            )
            con.execute("COMMIT")
        return PublishResult(rows)

    def discard(self, key: WindowKey) -> None:
        """Drop what the window's current load staged, and its state."""
        with self.connect() as con:
            con.execute("BEGIN")
            self._discard_staged(con, key)
            con.execute(
                f"DELETE FROM {self.table_ref('sync_state')} WHERE {_STATE_WHERE}", key.params()
            )
            con.execute("COMMIT")

    # --- analytics ----------------------------------------------------------------------

    def recompute_kpis(
        self, scope: Scope, window: Window, queries: dict[str, str]
    ) -> dict[str, int]:
        """Replace one window's rows of each analytics table with what ``queries`` compute
        from the window tables, in one transaction; the rows each table now holds for it."""
        params = {
            "env": scope.environment,
            "channel": scope.channel,
            "start": window.start,
            "end": window.end,
        }
        rows = {}
        with self.connect() as con:
            con.execute("BEGIN")
            for table, sql in queries.items():
                key = {k: params[k] for k in ("env", "channel", "start")}
                con.execute(f"DELETE FROM {self.table_ref(table)} WHERE {_ANALYTICS_WINDOW}", key)
                con.execute(sql.format(s=self.schema_ref), {**params, "now": datetime.now(UTC)})
                rows[table] = _count(
                    con,
                    f"SELECT count(*) FROM {self.table_ref(table)} WHERE {_ANALYTICS_WINDOW}",
                    key,
                )
            con.execute("COMMIT")
        return rows

    def replace_window_rows(
        self, table: str, scope: Scope, window: Window, rows: pd.DataFrame
    ) -> None:
        """Replace one scope's window of an analytics table with ``rows``, atomically."""
        key = {"env": scope.environment, "channel": scope.channel, "start": window.start}
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(f"DELETE FROM {self.table_ref(table)} WHERE {_ANALYTICS_WINDOW}", key)
            if len(rows):
                con.register("rows", rows)
                con.execute(f"INSERT INTO {self.table_ref(table)} BY NAME SELECT * FROM rows")
                con.unregister("rows")
            con.execute("COMMIT")

    # --- reading ------------------------------------------------------------------------

    def newest_synced_days(self) -> dict[Scope, date]:
        """Per scope, the day of the newest window published (any account and project)."""
        if not self._has_table("sync_state"):
            return {}
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT environment, channel, max(CAST(window_start AS DATE)) "
                f"FROM {self.table_ref('sync_state')} WHERE status = 'complete' GROUP BY ALL"
            ).fetchall()
        return {Scope(env, channel): day for env, channel, day in rows}

    def _has_table(self, table: str) -> bool:
        if not self.path.exists():
            return False
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = $schema AND table_name = $table",
                {"schema": self.schema_name, "table": table},
            ).fetchone()
        return bool(row and row[0])

    def windows_with_in_progress(self) -> list[tuple[Scope, date]]:
        """The (scope, day) of every published window that held in-progress conversations."""
        if not self._has_table("sync_state"):
            return []
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT DISTINCT environment, channel, CAST(window_start AS DATE) "
                f"FROM {self.table_ref('sync_state')} WHERE status = 'complete' AND in_progress > 0"
            ).fetchall()
        return [(Scope(env, channel), day) for env, channel, day in rows]

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
                    f"SELECT count(*) FROM {self.table_ref(table.name)} WHERE {where}",
                    params or {},
                )
                for table in schema.WINDOW_TABLES
            }

    def read_table(self, table: str, where: str = "TRUE") -> pd.DataFrame:
        """A whole table (or the rows matching ``where``) as a DataFrame."""
        with self.connect(read_only=True) as con:
            sql = f"SELECT * FROM {self.table_ref(table)} WHERE {where}"
            return con.sql(sql).to_arrow_table().to_pandas()


def quote(identifier: str) -> str:
    """An SQL identifier in double quotes, any double quote in it doubled."""
    return '"' + identifier.replace('"', '""') + '"'


def _column_list(table: sa.Table) -> str:
    return ", ".join(f'"{c.name}"' for c in table.columns)


def _quarantine_rows(
    key: WindowKey, load_id: str, page: int, batch: Batch, now: datetime
) -> pa.Table:
    records = batch.quarantined
    return pa.Table.from_pydict(
        {
            "load_id": [load_id] * len(records),
            "page": [page] * len(records),
            "position": [r.position for r in records],
            "conversation_id": [r.conversation_id for r in records],
            "environment": [key.scope.environment] * len(records),
            "channel": [key.scope.channel] * len(records),
            "window_start": [key.window.start] * len(records),
            "reason": [r.reason for r in records],
            "raw": [r.raw for r in records],
            "quarantined_at": [now] * len(records),
        },
        schema=schema.arrow_schema(schema.quarantine),
    )


def duckdb_dialect() -> sa.engine.Dialect:
    """SQLAlchemy's DuckDB dialect, to render the schema's DDL for DuckDB."""
    import duckdb_engine  # only to render DDL, when the schema is created or migrated

    return duckdb_engine.Dialect()


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0
