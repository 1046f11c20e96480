"""The PostgreSQL warehouse (14 or newer), through psycopg 3.

What differs from DuckDB is small and kept here: the connection (autocommit, with the shared
code's explicit ``BEGIN``/``COMMIT``; ``$name`` parameters rewritten to psycopg's
``%(name)s``), the bulk load (a batch goes in by one ``COPY … FROM STDIN`` in CSV, written by
Arrow's C++ CSV writer, never a statement per row), the DDL preamble (an advisory lock, so two
syncs starting at once on a new database do not race to create it) and the indexes a server
needs that a DuckDB file does not. Many syncs may write at once: each window's rows are
replaced in its own transaction, and row locks keep windows apart.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from core import schema
from resources.warehouse.resource import (
    JsonFunctions,
    Warehouse,
    WarehouseError,
)
from resources.warehouse.sql import PAGE_COLUMN, STAGE_PREFIX, quote

CONNECT_TIMEOUT_SECONDS = 10

_TOKENS = re.compile(r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'|\$([A-Za-z_]\w*)|%")
"""Quoted identifiers and string literals (left alone), ``$name`` parameters, and ``%``."""


def pyformat(sql: str) -> str:
    """``sql`` with ``$name`` parameters as psycopg's ``%(name)s`` and every other ``%``
    doubled; a ``$`` inside a quoted identifier or a string literal is left as it is."""

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if match.group(1):
            return f"%({match.group(1)})s"
        return text.replace("%", "%%")  # psycopg reads % anywhere, literals included

    return _TOKENS.sub(replace, sql)


class _Affected:
    """What a statement without a result returns: its row count, as DuckDB's DML does."""

    def __init__(self, count: int) -> None:
        self._row = (count,)

    def fetchone(self) -> tuple[int]:
        return self._row

    def fetchall(self) -> list[tuple[int]]:
        return [self._row]


class PostgresConnection:
    """A psycopg connection speaking the shared code's ``$name`` SQL."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        cursor = self.raw.execute(pyformat(sql), params or {})
        return cursor if cursor.description is not None else _Affected(cursor.rowcount)

    def close(self) -> None:
        self.raw.close()


class PostgresWarehouse(Warehouse):
    """An analytics warehouse in a PostgreSQL database."""

    engine: ClassVar[str] = "postgresql"
    hold_seconds: ClassVar[float | None] = None
    json: ClassVar[JsonFunctions] = JsonFunctions(
        number_field=(  # through numeric: 1e400 would not cast to a double, and fail
            "CASE WHEN json_typeof({value} -> '{field}') = 'number' THEN CASE WHEN "
            "abs(CAST({value} ->> '{field}' AS numeric)) < 1e300 "
            "THEN CAST({value} ->> '{field}' AS DOUBLE PRECISION) END END"
        ),
        boolean_field=(
            "CASE WHEN json_typeof({value} -> '{field}') = 'boolean' "
            "THEN CAST({value} ->> '{field}' AS BOOLEAN) END"
        ),
    )

    @property
    def conninfo(self) -> str:
        """The URL as libpq takes it (SQLAlchemy's ``postgresql+psycopg://`` accepted)."""
        scheme, rest = self.url.split("://", 1)
        return f"postgresql://{rest}" if "+" in scheme else self.url

    def _open(self, read_only: bool, held: bool) -> PostgresConnection:
        import psycopg
        from psycopg.types.string import TextLoader

        options = "-c TimeZone=UTC" + (" -c default_transaction_read_only=on" if read_only else "")
        try:
            raw = psycopg.connect(
                self.conninfo,
                autocommit=True,
                options=options,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                prepare_threshold=None,
                application_name="polyai-sync",
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise WarehouseError(
                f"cannot connect to warehouse {self.display_url}: {reason}"
            ) from exc
        # JSON as its text, as DuckDB returns it (and as it was written).
        for name in ("json", "jsonb"):
            raw.adapters.register_loader(name, TextLoader)
        raw.execute(f"SET search_path TO {self.schema_ref}")  # bare names: the schema's tables
        return PostgresConnection(raw)

    def dialect(self) -> sa.engine.Dialect:
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()

    def begin_ddl(self, con: Any) -> None:
        con.execute(
            "SELECT pg_advisory_xact_lock(hashtext($lock))",
            {"lock": f"polyai-sync schema {self.schema_name}"},
        )
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema_ref}")

    def after_ddl(self, con: Any) -> None:
        indexes = {
            # a window's conversations, for publish, the checks and the KPIs
            "conversations": ("environment", "channel", "started_at"),
            # the load's staged rows, for publish and discard
            **{STAGE_PREFIX + t.name: ("load_id",) for t in schema.WINDOW_TABLES},
            "quarantine": ("load_id",),
        }
        for table, columns in indexes.items():
            name = f"{table}_by_{'_'.join(columns)}".lstrip("_")
            con.execute(
                f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table)} "
                f"({', '.join(quote(c) for c in columns)})"
            )

    def insert(self, con: Any, table: str, rows: pa.Table, page: int | None = None) -> int:
        if page is not None:
            rows = rows.append_column(
                PAGE_COLUMN, pa.repeat(pa.scalar(page, pa.int64()), len(rows))
            )
        columns = ", ".join(quote(name) for name in rows.column_names)
        with con.raw.cursor() as cursor:
            statement = f"COPY {quote(table)} ({columns}) FROM STDIN (FORMAT csv)"
            with cursor.copy(statement) as copy:
                copy.write(memoryview(csv_for_copy(rows)))
            return cursor.rowcount

    def scrub(self) -> None:
        """VACUUM the tables an erasure deletes from (staging included): their dead rows are
        pruned and the space made reusable. It does not overwrite the old bytes, and the
        server's write-ahead log and backups keep them for as long as they are kept
        (``VACUUM FULL`` rewrites a table, under an exclusive lock: the operator's call)."""
        tables = [t.name for t in schema.metadata.sorted_tables]
        tables += [STAGE_PREFIX + t.name for t in schema.WINDOW_TABLES]
        with self.connect() as con:
            for table in tables:
                con.execute(f"VACUUM {quote(table)}")

    def fetch_arrow(self, con: Any, sql: str, params: dict[str, Any]) -> pa.Table:
        cursor = con.raw.execute(pyformat(sql), params)
        names = [column.name for column in cursor.description]
        types = [_ARROW_TYPES.get(column.type_code) for column in cursor.description]
        rows = cursor.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return pa.table(
            {
                name: pa.array(values, type=kind) if kind else pa.array(values)
                for name, values, kind in zip(names, columns, types, strict=True)
            }
        )


_ARROW_TYPES = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    25: pa.string(),
    114: pa.string(),  # json, read as text
    700: pa.float64(),
    701: pa.float64(),
    1009: pa.list_(pa.string()),  # text[]
    1015: pa.list_(pa.string()),  # varchar[]
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1700: pa.float64(),  # numeric (sums and averages)
    3802: pa.string(),  # jsonb, read as text
}
"""Arrow types of the PostgreSQL types the tables use, by type OID."""


def csv_for_copy(rows: pa.Table) -> pa.Buffer:
    """``rows`` as CSV for ``COPY … (FORMAT csv)``: no header; a null is an empty unquoted
    field and an empty string a quoted one, as COPY reads them; a list column as PostgreSQL's
    array literal (``{"a","b"}``); a NUL character as U+FFFD."""
    for index, field in enumerate(rows.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            rows = rows.set_column(index, field.name, _array_literals(rows.column(index)))
        elif (
            pa.types.is_string(field.type)
            and pc.any(pc.match_substring(rows.column(index), "\x00")).as_py()
        ):
            # PostgreSQL's text cannot hold NUL: it becomes U+FFFD in the typed column (the
            # raw JSON keeps it, escaped as \u0000).
            rows = rows.set_column(
                index, field.name, pc.replace_substring(rows.column(index), "\x00", "\ufffd")
            )
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(rows, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue()


def _array_literals(column: pa.ChunkedArray) -> pa.Array:
    lists = column.combine_chunks()
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    items = pc.replace_substring(lists.values.cast(pa.string()), "\x00", "\ufffd")
    escaped = pc.replace_substring(pc.replace_substring(items, "\\", "\\\\"), '"', '\\"')
    quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    quoted = pc.if_else(pc.is_null(items), pa.scalar("NULL"), quoted)
    regrouped = pa.ListArray.from_arrays(lists.offsets, quoted, mask=lists.is_null())
    joined = pc.binary_join(regrouped, ",")
    return pc.binary_join_element_wise("{", joined, "}", "")
