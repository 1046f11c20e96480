"""The warehouse resource: what an engine must provide, and the connections to it.

:class:`Warehouse` is the Dagster resource a sync, an asset or a test holds. It knows the
warehouse's address and schema, opens connections (every one resolving bare table names to
the schema, :mod:`resources.warehouse.sql`), keeps one across a sync's commits inside
:meth:`Warehouse.holding`, and creates or migrates the tables
(:mod:`resources.warehouse.ddl`). An engine (:mod:`resources.warehouse.duckdb_engine`,
:mod:`resources.warehouse.postgres_engine`) subclasses it with its connection, its bulk load,
its DDL preamble and two JSON functions; :mod:`resources.warehouse.registry` picks one by URL.

What is done over a connection lives beside it, each in one place: a window's load
(:mod:`resources.warehouse.load`), the sync state (:mod:`resources.warehouse.state`), and the
analytics SQL (:mod:`resources.warehouse.analytics`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from core import schema
from core.env import DEFAULTS, Env
from core.errors import PolyAISyncError
from core.lazy import lazy_module
from core.urls import display_url
from core.windows import Scope, Window
from resources.warehouse import ddl
from resources.warehouse.sql import (
    CONVERSATIONS_IN_WINDOW,
    IN_WINDOW,
    Connection,
    column_list,
    count,
    quote,
    window_params,
)
from resources.warehouse.staging import Staging

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

if TYPE_CHECKING:  # imported where used: a sync needs neither (~100 MB of a process's RSS)
    import pandas as pd


class WarehouseError(PolyAISyncError):
    """The warehouse could not be opened or written."""


class WarehouseBusyError(WarehouseError):
    """Another process held the warehouse for longer than a sync waits for it."""

    transient = True


class WarehouseSizeError(WarehouseError):
    """What one transaction would hold is more than the warehouse may take in memory; the
    message says how much, and which setting to change. What was committed before is kept."""


@dataclass(frozen=True)
class JsonFunctions:
    """The JSON functions the migrations need, as each engine spells them (the dbt models'
    are macros of their own: ``dbt_project/macros/json.sql``)."""

    number_field: str
    """The top-level field ``{field}`` of the JSON object ``{value}`` as a double precision
    number (null when it is absent, not a number, or beyond a double's range)."""
    boolean_field: str
    """The same as a boolean (null when it is absent or not one)."""


class Warehouse(ConfigurableResource):
    """The analytics warehouse; a subclass per engine (build one with
    :func:`resources.warehouse.registry.warehouse_for`)."""

    url: str = Field(
        description=f"{Env.WAREHOUSE_URL}: duckdb:///path/file.duckdb or postgresql://…"
    )
    schema_name: str = Field(
        default=DEFAULTS[Env.WAREHOUSE_SCHEMA], description="SQL schema holding the tables"
    )
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
        """A new connection whose bare table names resolve to the schema (once it exists)."""
        raise NotImplementedError

    def dialect(self) -> sa.engine.Dialect:
        """The SQLAlchemy dialect the DDL is rendered in."""
        raise NotImplementedError

    def begin_ddl(self, con: Connection) -> None:
        """Inside the schema's DDL transaction, before the tables: create the schema and
        make it the one bare names resolve to."""
        raise NotImplementedError

    def after_ddl(self, con: Connection) -> None:
        """Inside the DDL transaction, after the tables: anything engine-specific."""

    def insert(self, con: Connection, table: str, rows: pa.Table, page: int | None = None) -> int:
        """Append ``rows`` (columns named like ``table``'s) to ``table`` in bulk, with
        ``page`` as the staging tables' page column; the rows inserted."""
        raise NotImplementedError

    def fetch_arrow(self, con: Connection, sql: str, params: dict[str, Any]) -> pa.Table:
        """The query's result as Arrow."""
        raise NotImplementedError

    @contextlib.contextmanager
    def room_for(self, con: Connection, large_bytes: int, what: str, page: bool) -> Iterator[None]:
        """Around a transaction that holds ``large_bytes`` in large text values (``what``: a
        page when ``page``, else a window's publish): make room for them first, or raise
        :class:`WarehouseSizeError`. Nothing by default (PostgreSQL writes them out as it
        goes)."""
        yield

    def scrub(self) -> None:
        """After rows were deleted for good (an erasure): leave nothing of them readable in
        the warehouse's storage. Nothing by default."""

    @property
    def staging(self) -> Staging:
        """Where loads stage their pages until publishing: the staging tables by default."""
        return Staging(self)

    def table_ref(self, table: str) -> str:
        """A table of the warehouse schema, schema-qualified, for SQL written outside the
        warehouse's own connections (tests, tools)."""
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
        """Create the schema and tables, or add the columns a newer version declares
        (existing rows kept: :func:`resources.warehouse.ddl.migrate`)."""
        if self.exists():
            with self.connect(read_only=True) as con:
                if ddl.is_complete(con, self.schema_name, self.staging.in_transaction):
                    return  # the common case: every window sync calls this
        with self.connect() as con:
            con.execute("BEGIN")
            self.begin_ddl(con)
            ddl.create_and_migrate(
                con,
                self.schema_name,
                self.dialect(),
                self.unenforced_keys,
                {"number": self.json.number_field, "boolean": self.json.boolean_field},
                stage_tables=self.staging.in_transaction,
            )
            self.after_ddl(con)
            con.execute("COMMIT")

    # --- reading ------------------------------------------------------------------------

    def has_table(self, table: str) -> bool:
        """Whether the schema holds ``table`` (a new warehouse holds none)."""
        if not self.exists():
            return False
        with self.connect(read_only=True) as con:
            return bool(
                count(
                    con,
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = $schema AND table_name = $table",
                    {"schema": self.schema_name, "table": table},
                )
            )

    def window_rows(self, table: sa.Table, scope: Scope, window: Window) -> pa.Table:
        """One scope's window of a window table (the children of its conversations), as
        Arrow, in the table's column order."""
        where = IN_WINDOW
        if table is not schema.conversations:
            where = f"conversation_id IN ({CONVERSATIONS_IN_WINDOW})"
        with self.connect(read_only=True) as con:
            return self.fetch_arrow(
                con,
                f"SELECT {column_list(table)} FROM {quote(table.name)} WHERE {where}",
                window_params(scope, window),
            )

    def row_counts(
        self, where: str = "TRUE", params: dict[str, object] | None = None
    ) -> dict[str, int]:
        """Rows per window table matching ``where`` (0 for a warehouse not created yet)."""
        if not self.has_table("conversations"):
            return {table.name: 0 for table in schema.WINDOW_TABLES}
        with self.connect(read_only=True) as con:
            return {
                table.name: count(
                    con, f"SELECT count(*) FROM {quote(table.name)} WHERE {where}", params
                )
                for table in schema.WINDOW_TABLES
            }

    def read_table(self, table: str, where: str = "TRUE") -> pd.DataFrame:
        """A whole table (or the rows matching ``where``) as a DataFrame."""
        with self.connect(read_only=True) as con:
            sql = f"SELECT * FROM {quote(table)} WHERE {where}"
            return self.fetch_arrow(con, sql, {}).to_pandas()
