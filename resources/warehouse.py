"""The warehouse, as a Dagster resource: the tables of :mod:`core.schema` in DuckDB or PostgreSQL.

``WAREHOUSE_URL`` picks the engine (:func:`warehouse_for`): ``duckdb:///file.duckdb`` (the
default, :mod:`resources.duckdb_warehouse`) or ``postgresql://…`` (14 or newer,
:mod:`resources.postgres_warehouse`). Everything here is shared by both: the SQL is written
once, with ``$name`` parameters and quoted identifiers; an engine supplies its connection, its
bulk load (DuckDB reads the Arrow batch in place, PostgreSQL takes it by ``COPY``), its DDL
preamble and two JSON functions.

A window is loaded in two steps. Each page is *staged* (appended to staging tables under the
load's id) in one short transaction that also records the page's cursor in ``sync_state`` and
its quarantined records in ``quarantine``: a run that dies resumes from the last committed
cursor. When the last page is in, the window is *published*: in one transaction its old rows
are deleted and the staged rows inserted, so readers see the old window or the new one, never
a mix, and loading a window twice leaves the same rows as loading it once.

Inside :meth:`Warehouse.holding`, a sync keeps one connection across its commits (DuckDB lets
it go at least every ``hold_seconds`` so other processes get the file between two commits).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pyarrow as pa
import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from core import schema
from core.config import display_url
from core.errors import PolyAISyncError
from core.normalize import Batch, Quarantined, reassemble, to_json
from core.windows import Scope, Window, window_key

if TYPE_CHECKING:  # imported where used: a sync needs neither (~100 MB of a process's RSS)
    import pandas as pd

STAGE_PREFIX = "_stage_"
PAGE_COLUMN = "_page"


class WarehouseError(PolyAISyncError):
    """The warehouse could not be opened or written."""


class WarehouseBusyError(WarehouseError):
    """Another process held the warehouse for longer than a sync waits for it."""

    transient = True


class WarehouseSizeError(WarehouseError):
    """What one transaction would hold is more than the warehouse may take in memory; the
    message says how much, and which setting to change. What was committed before is kept."""


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared code needs of a connection: ``$name`` parameters, explicit
    ``BEGIN``/``COMMIT``, close."""

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Cursor: ...
    def close(self) -> None: ...


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

    def describe(self) -> str:
        """``live.voice 2026-01-05``, for messages."""
        return f"{self.scope.key} {window_key(self.window)}"


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


COLLISION = "collision"
"""The reason prefix of a record set aside when publishing: another window holds its id."""


@dataclass(frozen=True)
class Collision:
    """A conversation a load brought that another window (or scope) already holds."""

    conversation_id: str
    held_by: str
    """``environment.channel window_start`` of the window holding it."""


@dataclass(frozen=True)
class PublishResult:
    """What publishing did: rows the window now holds per table, what it held before, and
    the conversations left with the window that already held them."""

    rows: dict[str, int]
    replaced: int = 0
    collisions: tuple[Collision, ...] = ()


@dataclass(frozen=True)
class JsonFunctions:
    """The two JSON aggregates the KPI queries need, as each engine spells them."""

    object_agg: str
    """``{key}``/``{value}`` pairs aggregated into a JSON object."""
    array_length: str
    """The length of the JSON array ``{value}`` (null when it is not an array)."""


_STATE_WHERE = (
    "account_id = $account AND project_id = $project AND environment = $env "
    "AND channel = $channel AND window_start = $start"
)

_ANALYTICS_WINDOW = "environment = $env AND channel = $channel AND window_start = $start"
"""One scope's window of an analytics table (they are keyed by it)."""

IN_WINDOW = "environment = $env AND channel = $channel AND window_start = $start"
"""The conversations one scope's window holds (parameters: :func:`window_params`): those its
last load brought, wherever they started. A record the API served for another window than
its ``started_at`` is in stays with the window that served it: only a re-sync of that window
replaces or removes it (the ``timestamps_inside_the_window`` check reports it)."""


def window_params(scope: Scope, window: Window) -> dict[str, Any]:
    return {"env": scope.environment, "channel": scope.channel, "start": window.start}


class Warehouse(ConfigurableResource):
    """The analytics warehouse; a subclass per engine (build one with :func:`warehouse_for`)."""

    url: str = Field(description="WAREHOUSE_URL: duckdb:///path/file.duckdb or postgresql://…")
    schema_name: str = Field(default="polyai", description="SQL schema holding the tables")
    _holding: int = PrivateAttr(default=0)
    _held: Any = PrivateAttr(default=None)
    _held_since: float = PrivateAttr(default=0.0)

    engine: ClassVar[str] = ""
    hold_seconds: ClassVar[float | None] = None
    """How long :meth:`holding` keeps one connection before letting it go after an operation
    (None: for the whole of it)."""
    unenforced_keys: ClassVar[tuple[sa.Table, ...]] = ()
    json: ClassVar[JsonFunctions]

    # --- what an engine provides ------------------------------------------------------------

    @property
    def schema_ref(self) -> str:
        """The schema, as SQL."""
        return quote(self.schema_name)

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for logs and messages."""
        return display_url(self.url)

    def exists(self) -> bool:
        """Whether the warehouse's storage exists at all (reads of a new one find nothing)."""
        return True

    def _open(self, read_only: bool, held: bool) -> Connection:
        raise NotImplementedError

    def _dialect(self) -> sa.engine.Dialect:
        raise NotImplementedError

    def _begin_ddl(self, con: Connection) -> None:
        """Inside the schema's DDL transaction, before the tables: create the schema and
        make it the one unqualified names resolve to."""
        raise NotImplementedError

    def _after_ddl(self, con: Connection) -> None:
        """Inside the DDL transaction, after the tables: anything engine-specific."""

    def _insert(self, con: Connection, table: str, rows: pa.Table, page: int | None = None) -> int:
        """Append ``rows`` (columns named like ``table``'s) to ``table`` in bulk, with
        ``page`` as the staging tables' page column; the rows inserted."""
        raise NotImplementedError

    def _fetch_arrow(self, con: Connection, sql: str, params: dict[str, Any]) -> pa.Table:
        raise NotImplementedError

    @contextlib.contextmanager
    def _room_for(self, con: Connection, large_bytes: int, what: str, page: bool) -> Iterator[None]:
        """Around a transaction that holds ``large_bytes`` in large text values (``what``: a
        page when ``page``, else a window's publish): make room for them first, or raise
        :class:`WarehouseSizeError`. Nothing by default (PostgreSQL writes them out as it
        goes)."""
        yield

    def table_ref(self, table: str) -> str:
        """A table of the warehouse schema, as SQL."""
        return f"{self.schema_ref}.{quote(table)}"

    # --- connections --------------------------------------------------------------------

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Keep one connection across the operations inside (for up to ``hold_seconds`` at a
        time): a window's pages then cost one connection, not one a page. Every operation
        still commits on its own."""
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
    def connect(self, read_only: bool = False) -> Iterator[Connection]:
        """A connection, opened now and closed on exit (inside :meth:`holding`, the held
        one, read-write). A failure inside closes it, and so rolls back what it left open."""
        if not self._holding:
            connection = self._open(read_only, held=False)
            try:
                yield connection
            finally:
                connection.close()
            return
        if self._held is None:
            self._held = self._open(read_only=False, held=True)
            self._held_since = time.monotonic()
        try:
            yield self._held
        except BaseException:
            self._release()  # and with it any transaction the failure left open
            raise
        held_for = time.monotonic() - self._held_since
        if self.hold_seconds is not None and held_for > self.hold_seconds:
            self._release()

    # --- schema -----------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the schema and tables, or add the columns a newer version declares.

        Existing rows are kept: a column added by a later version is added in place (null in
        old rows), and the staging tables follow their tables.
        """
        if self._schema_is_complete():
            return  # the common case: every window sync calls this
        dialect = self._dialect()
        with self.connect() as con:
            con.execute("BEGIN")
            self._begin_ddl(con)
            for statement in schema.create_statements(dialect, self.unenforced_keys):
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
                    added = self._add_missing_columns(con, table, target, dialect)
                    if target == "conversations" and "window_start" in added:
                        self._assign_owners(con)
            self._after_ddl(con)
            con.execute("COMMIT")

    def _schema_is_complete(self) -> bool:
        """Whether every table (and staging table) has every declared column: one read-only
        query, against taking the write lock to run the DDL."""
        expected = {(t.name, c.name) for t in schema.metadata.sorted_tables for c in t.columns}
        expected |= {
            (STAGE_PREFIX + t.name, c.name) for t in schema.WINDOW_TABLES for c in t.columns
        }
        if not self.exists():
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

    def _assign_owners(self, con: Connection) -> None:
        """Rows written before conversations carried ``window_start`` belong to the window
        they started in (what publishing replaced then)."""
        con.execute(
            f"UPDATE {self.table_ref('conversations')} AS c SET window_start = s.window_start "
            f"FROM {self.table_ref('sync_state')} AS s WHERE s.environment = c.environment "
            "AND s.channel = c.channel AND c.started_at >= s.window_start "
            "AND c.started_at < s.window_end"
        )

    def _add_missing_columns(
        self, con: Connection, table: sa.Table, target: str, dialect: sa.engine.Dialect
    ) -> list[str]:
        """Add the columns of ``table`` that ``target`` lacks; their names."""
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
        return [column.name for column in table.columns if column.name not in existing]

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
                f"INSERT INTO {self.table_ref('sync_state')} (account_id, project_id, "
                "environment, channel, window_start, window_end, status, load_id, pages, "
                "conversations, quarantined, in_progress, large_value_bytes, started_at, "
                "updated_at) VALUES ($account, $project, $env, $channel, $start, $end, "
                "'running', $load, 0, 0, 0, 0, 0, $now, $now)",
                {**key.params(), "end": key.window.end, "load": load_id, "now": now},
            )
            con.execute("COMMIT")

    def _discard_staged(self, con: Connection, key: WindowKey) -> None:
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
        large = batch.large_value_bytes
        what = f"{key.describe()} page {page}"
        with self.connect() as con, self._room_for(con, large, what, page=True):
            con.execute("BEGIN")
            for table, rows in batch.tables.items():
                if rows.num_rows:
                    self._insert(con, STAGE_PREFIX + table, rows, page=int(page))
            if batch.quarantined:
                self._insert(
                    con, "quarantine", _quarantine_rows(key, load_id, page, batch.quarantined, now)
                )
            updated = con.execute(
                f"UPDATE {self.table_ref('sync_state')} SET cursor = $cursor, pages = $page, "
                "conversations = conversations + $rows, quarantined = quarantined + $bad, "
                "in_progress = in_progress + $ongoing, updated_at = $now, "
                "large_value_bytes = coalesce(large_value_bytes, 0) + $large, "
                "status = CASE WHEN CAST($cursor AS VARCHAR) IS NULL THEN 'staged' "
                "ELSE 'running' END "
                f"WHERE {_STATE_WHERE} AND load_id = $load AND status = 'running' "
                "RETURNING 1",
                {
                    **key.params(),
                    "cursor": next_cursor,
                    "page": page,
                    "rows": batch.conversations.num_rows,
                    "bad": len(batch.quarantined),
                    "ongoing": batch.in_progress,
                    "large": large,
                    "now": now,
                    "load": load_id,
                },
            ).fetchall()
            if not updated:
                con.execute("ROLLBACK")
                raise WarehouseError(
                    f"load {load_id} no longer owns {key.describe()}: "
                    "another sync of the same window took it over"
                )
            con.execute("COMMIT")

    def publish(self, key: WindowKey, load_id: str) -> PublishResult:
        """Replace the window with what ``load_id`` staged, atomically, and mark it complete.

        The window's own rows (:data:`IN_WINDOW`) are replaced, never another window's. A
        conversation the load brings that another window or scope already holds stays where
        it is (so that window's rows, KPIs and lake files keep agreeing) and this load's copy
        is quarantined, whole, with a reason naming the holder.
        """
        load = {"load": load_id}
        conv = self.table_ref("conversations")
        stage_conv = self.table_ref(STAGE_PREFIX + "conversations")
        owned = window_params(key.scope, key.window)
        with (
            self.connect() as con,
            self._room_for(
                con,
                _count(
                    con,
                    "SELECT coalesce(large_value_bytes, 0) FROM "
                    f"{self.table_ref('sync_state')} WHERE {_STATE_WHERE}",
                    key.params(),
                ),
                f"publishing {key.describe()}",
                page=False,
            ),
        ):
            con.execute("BEGIN")
            con.execute(
                f"CREATE TEMP TABLE replaced AS SELECT id FROM {conv} WHERE {IN_WINDOW}", owned
            )
            replaced = _count(con, "SELECT count(*) FROM replaced", {})
            for table in schema.CHILD_TABLES:
                con.execute(
                    f"DELETE FROM {self.table_ref(table.name)} "
                    "WHERE conversation_id IN (SELECT id FROM replaced)"
                )
            con.execute(f"DELETE FROM {conv} WHERE id IN (SELECT id FROM replaced)")
            con.execute("DROP TABLE replaced")
            collisions = self._set_aside_collisions(con, key, load_id)
            keep = " AND id NOT IN (SELECT id FROM held_elsewhere)" if collisions else ""
            # A conversation served on two pages keeps its latest copy, children included;
            # only then is more than a streaming copy needed.
            served_twice = _count(
                con,
                f"SELECT count(*) - count(DISTINCT id) FROM {stage_conv} WHERE load_id = $load",
                load,
            )
            columns = _column_list(schema.conversations)
            values = ", ".join(
                "$start" if c.name == "window_start" else quote(c.name)
                for c in schema.conversations.columns
            )
            where = f"load_id = $load{keep}"
            select = f"SELECT {values} FROM {stage_conv} WHERE {where}"
            if served_twice:
                select = (
                    f"SELECT DISTINCT ON (id) {values} FROM {stage_conv} WHERE {where} "
                    f"ORDER BY id, {PAGE_COLUMN} DESC"
                )
            rows = {
                "conversations": _count(
                    con,
                    f"INSERT INTO {conv} ({columns}) {select}",
                    {**load, "start": owned["start"]},
                )
            }
            latest = (
                f" AND (conversation_id, {PAGE_COLUMN}) IN (SELECT id, max({PAGE_COLUMN}) "
                f"FROM {stage_conv} WHERE load_id = $load GROUP BY id)"
                if served_twice
                else ""
            )
            if collisions:
                latest += " AND conversation_id NOT IN (SELECT id FROM held_elsewhere)"
            for table in schema.CHILD_TABLES:
                columns = _column_list(table)
                rows[table.name] = _count(
                    con,
                    f"INSERT INTO {self.table_ref(table.name)} ({columns}) SELECT {columns} "
                    f"FROM {self.table_ref(STAGE_PREFIX + table.name)} "
                    f"WHERE load_id = $load{latest}",
                    load,
                )
            if collisions:
                con.execute("DROP TABLE held_elsewhere")
            for table in schema.WINDOW_TABLES:
                con.execute(
                    f"DELETE FROM {self.table_ref(STAGE_PREFIX + table.name)} "
                    "WHERE load_id = $load",
                    load,
                )
            con.execute(
                f"UPDATE {self.table_ref('sync_state')} SET status = 'complete', cursor = NULL, "
                "replaced_conversations = $replaced, collisions = $collisions, "
                f"updated_at = $now, completed_at = $now WHERE {_STATE_WHERE}",
                {
                    **key.params(),
                    "replaced": replaced,
                    "collisions": len(collisions),
                    "now": datetime.now(UTC),
                },
            )
            con.execute("COMMIT")
        return PublishResult(rows, replaced, tuple(collisions))

    def _set_aside_collisions(
        self, con: Connection, key: WindowKey, load_id: str
    ) -> list[Collision]:
        """Inside publishing, after the window's own rows are gone: the staged conversations
        that another window still holds (left in temp table ``held_elsewhere``), each
        quarantined whole (reassembled from its staged rows) as page 0 of the load."""
        conv = self.table_ref("conversations")
        stage_conv = self.table_ref(STAGE_PREFIX + "conversations")
        con.execute(
            f"CREATE TEMP TABLE held_elsewhere AS SELECT id, environment, channel, window_start "
            f"FROM {conv} WHERE id IN (SELECT id FROM {stage_conv} WHERE load_id = $load)",
            {"load": load_id},
        )
        held = con.execute(
            "SELECT id, environment, channel, window_start FROM held_elsewhere ORDER BY id"
        ).fetchall()
        if not held:
            con.execute("DROP TABLE held_elsewhere")
            return []
        collisions = [
            Collision(ident, f"{env}.{channel} {_moment(start)}")
            for ident, env, channel, start in held
        ]
        records = self._staged_records(con, load_id)
        now = datetime.now(UTC)
        quarantined = [
            Quarantined(
                position,
                c.conversation_id,
                f"{COLLISION}: conversation {c.conversation_id} is already held by window "
                f"{c.held_by}; this load's copy was set aside and that window keeps its own",
                records[c.conversation_id],
            )
            for position, c in enumerate(collisions)
        ]
        self._insert(con, "quarantine", _quarantine_rows(key, load_id, 0, quarantined, now))
        return collisions

    def _staged_records(self, con: Connection, load_id: str) -> dict[str, str]:
        """The staged conversations in ``held_elsewhere`` as received (their latest page's
        copy): each one's ``raw`` with its turns' ``raw`` and their genAI metadata put back."""

        def staged(table: str, columns: str) -> list[Any]:
            key = "id" if table == "conversations" else "conversation_id"
            return con.execute(
                f"SELECT {columns} FROM {self.table_ref(STAGE_PREFIX + table)} "
                f"WHERE load_id = $load AND {key} IN (SELECT id FROM held_elsewhere) "
                f"ORDER BY {PAGE_COLUMN}",
                {"load": load_id},
            ).fetchall()

        page_of: dict[str, int] = {}
        conversation_raw: dict[str, Any] = {}
        for ident, page, raw in staged("conversations", f"id, {PAGE_COLUMN}, raw"):
            page_of[ident], conversation_raw[ident] = page, _json(raw)  # the latest page wins
        parts: dict[str, dict[str, dict[int, Any]]] = {"turns": {}, "turn_genai": {}}
        for table, of_table in parts.items():
            for ident, page, index, raw in staged(
                table, f"conversation_id, {PAGE_COLUMN}, turn_index, raw"
            ):
                if page == page_of[ident]:
                    of_table.setdefault(ident, {})[index] = _json(raw)
        return {
            ident: to_json(
                reassemble(
                    raw,
                    [turn for _, turn in sorted(parts["turns"].get(ident, {}).items())],
                    parts["turn_genai"].get(ident, {}),
                )
            )
            or "null"
            for ident, raw in conversation_raw.items()
        }

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
        self, scope: Scope, window: Window, selects: dict[str, str]
    ) -> dict[str, int]:
        """Replace one window's rows of each analytics table with what ``selects`` compute
        from the window tables (each a query naming every column of its table; ``{s}`` the
        schema), in one transaction; the rows each table now holds for it."""
        params = {**window_params(scope, window), "now": datetime.now(UTC)}
        key = {k: params[k] for k in ("env", "channel", "start")}
        rows = {}
        with self.connect() as con:
            con.execute("BEGIN")
            for table, select in selects.items():
                columns = _column_list(schema.metadata.tables[table])
                con.execute(f"DELETE FROM {self.table_ref(table)} WHERE {_ANALYTICS_WINDOW}", key)
                rows[table] = _count(
                    con,
                    f"INSERT INTO {self.table_ref(table)} ({columns}) SELECT {columns} FROM "
                    f"({select.format(s=self.schema_ref)}) AS computed",
                    params,
                )
            con.execute("COMMIT")
        return rows

    def replace_window_rows(
        self, table: str, scope: Scope, window: Window, rows: pd.DataFrame
    ) -> None:
        """Replace one scope's window of an analytics table with ``rows``, atomically."""
        key = {"env": scope.environment, "channel": scope.channel, "start": window.start}
        columns = schema.arrow_schema(schema.metadata.tables[table])
        # (an empty frame's columns have no dtype Arrow could cast: nothing to convert)
        batch = (
            pa.Table.from_pandas(rows, schema=columns, preserve_index=False)
            if len(rows)
            else columns.empty_table()
        )
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(f"DELETE FROM {self.table_ref(table)} WHERE {_ANALYTICS_WINDOW}", key)
            if batch.num_rows:
                self._insert(con, table, batch)
            con.execute("COMMIT")

    def window_rows(self, table: sa.Table, scope: Scope, window: Window) -> pa.Table:
        """One scope's window of a window table (the children of its conversations), as
        Arrow, in the table's column order."""
        where = IN_WINDOW
        if table is not schema.conversations:
            conversations = self.table_ref("conversations")
            where = f"conversation_id IN (SELECT id FROM {conversations} WHERE {IN_WINDOW})"
        with self.connect(read_only=True) as con:
            return self._fetch_arrow(
                con,
                f"SELECT {_column_list(table)} FROM {self.table_ref(table.name)} WHERE {where}",
                window_params(scope, window),
            )

    # --- reading ------------------------------------------------------------------------

    def newest_synced_days(self) -> dict[Scope, date]:
        """Per scope, the day of the newest window published (any account and project)."""
        if not self._has_table("sync_state"):
            return {}
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT environment, channel, max(CAST(window_start AS DATE)) "
                f"FROM {self.table_ref('sync_state')} WHERE status = 'complete' "
                "GROUP BY environment, channel"
            ).fetchall()
        return {Scope(env, channel): day for env, channel, day in rows}

    def last_load(self, scope: Scope, window: Window) -> str | None:
        """The load that last published the window (any account and project), or None if
        it was never published."""
        if not self._has_table("sync_state"):
            return None
        with self.connect(read_only=True) as con:
            row = con.execute(
                f"SELECT load_id FROM {self.table_ref('sync_state')} "
                "WHERE environment = $env AND channel = $channel AND window_start = $start "
                "AND status = 'complete' ORDER BY completed_at DESC LIMIT 1",
                {"env": scope.environment, "channel": scope.channel, "start": window.start},
            ).fetchone()
        return row[0] if row else None

    def _has_table(self, table: str) -> bool:
        if not self.exists():
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
        if not self._has_table("conversations"):
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
            return self._fetch_arrow(con, sql, {}).to_pandas()


def warehouse_for(
    url: str, schema_name: str = "polyai", max_memory_mb: int | None = None
) -> Warehouse:
    """The warehouse ``url`` names (``duckdb:///…`` or ``postgresql://…``); ``max_memory_mb``
    is DuckDB's (``WAREHOUSE_MAX_MEMORY_MB``)."""
    scheme = url.split(":", 1)[0].lower().split("+")[0]
    if scheme == "duckdb":
        from resources.duckdb_warehouse import DuckDBWarehouse

        return DuckDBWarehouse(url=url, schema_name=schema_name, max_memory_mb=max_memory_mb)
    if scheme in ("postgresql", "postgres"):
        from resources.postgres_warehouse import PostgresWarehouse

        return PostgresWarehouse(url=url, schema_name=schema_name)
    raise WarehouseError(
        f"WAREHOUSE_URL {display_url(url)!r}: unsupported engine {scheme!r}; "
        "use duckdb:///path/file.duckdb or postgresql://user@host:port/database"
    )


def quote(identifier: str) -> str:
    """An SQL identifier in double quotes, any double quote in it doubled."""
    return '"' + identifier.replace('"', '""') + '"'


def _column_list(table: sa.Table) -> str:
    return ", ".join(quote(c.name) for c in table.columns)


def _quarantine_rows(
    key: WindowKey, load_id: str, page: int, records: list[Quarantined], now: datetime
) -> pa.Table:
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


def _json(value: Any) -> Any:
    """A JSON column's value as Python (DuckDB returns text, psycopg the parsed value)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _moment(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, datetime) else str(value)


def _count(con: Connection, sql: str, params: dict[str, object]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0
