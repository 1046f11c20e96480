"""The warehouse's DDL: the tables of :mod:`core.schema`, their staging twins, and the
migrations a newer version needs, run inside the one transaction
:meth:`resources.warehouse.resource.Warehouse.ensure_schema` opens.

A migration only adds: a column a later version declares is added in place, and the staging
tables follow their tables. Nothing is dropped or rewritten, so an older version's rows are
kept and a newer version can always open an older warehouse. A new column is null in old rows,
unless it can be read from what the row already holds: the field it is read from, in the
row's ``raw`` (:data:`BACKFILLS`), or the window a conversation belongs to.
"""

from __future__ import annotations

import sqlalchemy as sa

from core import schema
from resources.warehouse.sql import PAGE_COLUMN, STAGE_PREFIX, Connection, quote

BACKFILLS: dict[tuple[str, str], tuple[str, str]] = {
    # The label as received (an older version stored it as the channel itself).
    ("conversations", "channel_label"): ("text", "TRUE"),
    # The API's seconds, where raw holds them as a decimal number: an older version could not
    # type those (its column was an integer one), and an integer there was its simulator's
    # milliseconds, kept as they were in the old `latency` column.
    ("turns", "latency_s"): ("number", "{text} LIKE '%.%' OR lower({text}) LIKE '%e%'"),
    ("turns", "barge_in"): ("boolean", "TRUE"),
}
"""(table, new column) -> how an existing row's value is read from its ``raw`` at the
column's key (``text``, or the engine's ``JsonFunctions.number_field``/``boolean_field``),
and for which rows (SQL over ``{text}``, the field as text). A column of ``turn_genai`` is
not among them: its keys' mapping (core.turn_metadata) is not SQL; a re-sync fills it."""


def is_complete(con: Connection, schema_name: str, stage_tables: bool = True) -> bool:
    """Whether every table (and staging table, when the engine stages in tables) has every
    declared column: one read-only query, against taking the write lock to run the DDL."""
    expected = {(t.name, c.name) for t in schema.metadata.sorted_tables for c in t.columns}
    if stage_tables:
        expected |= {
            (STAGE_PREFIX + t.name, c.name) for t in schema.WINDOW_TABLES for c in t.columns
        }
    present = set(
        con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = $schema",
            {"schema": schema_name},
        ).fetchall()
    )
    return expected <= present


def create_and_migrate(
    con: Connection,
    schema_name: str,
    dialect: sa.engine.Dialect,
    unenforced_keys: tuple[sa.Table, ...],
    json_fields: dict[str, str],
    stage_tables: bool = True,
) -> None:
    """Create what is missing and add the columns older tables lack (in the schema bare names
    resolve to, inside the caller's transaction); the staging tables too when the engine
    stages in tables (:mod:`resources.warehouse.staging`)."""
    for statement in schema.create_statements(dialect, unenforced_keys):
        con.execute(statement)
    for table in schema.WINDOW_TABLES if stage_tables else ():
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {quote(STAGE_PREFIX + table.name)} "
            f"AS SELECT *, 0 AS {PAGE_COLUMN} FROM {quote(table.name)} WITH NO DATA"
        )
    for table in schema.metadata.sorted_tables:
        targets = [table.name]
        if stage_tables and table in schema.WINDOW_TABLES:
            targets.append(STAGE_PREFIX + table.name)
        for target in targets:
            added = _add_missing_columns(con, schema_name, table, target, dialect)
            if target == "conversations" and "window_start" in added:
                _assign_owners(con)
            for column in added:
                _backfill(con, table, target, column, json_fields)


def _add_missing_columns(
    con: Connection, schema_name: str, table: sa.Table, target: str, dialect: sa.engine.Dialect
) -> list[str]:
    """Add the columns of ``table`` that ``target`` lacks; their names."""
    existing = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $schema AND table_name = $table",
            {"schema": schema_name, "table": target},
        ).fetchall()
    }
    missing = [column for column in table.columns if column.name not in existing]
    for column in missing:
        kind = column.type.compile(dialect=dialect)
        con.execute(f"ALTER TABLE {quote(target)} ADD COLUMN {quote(column.name)} {kind}")
    return [column.name for column in missing]


def _backfill(
    con: Connection, table: sa.Table, target: str, column: str, json_fields: dict[str, str]
) -> None:
    """Fill a column just added to ``target`` (``table`` or its staging twin) in the rows it
    already holds, when :data:`BACKFILLS` says where from; ``json_fields`` are the engine's
    ``number`` and ``boolean`` readers."""
    if (table.name, column) not in BACKFILLS:
        return
    kind, condition = BACKFILLS[(table.name, column)]
    key = table.columns[column].info.get("key", column)
    text = f"(raw ->> '{key}')"
    value = text if kind == "text" else json_fields[kind].format(value="raw", field=key)
    con.execute(
        f"UPDATE {quote(target)} SET {quote(column)} = {value} "
        f"WHERE raw IS NOT NULL AND ({condition.format(text=text)})"
    )


def _assign_owners(con: Connection) -> None:
    """Rows written before conversations carried ``window_start`` belong to the window they
    started in (what publishing replaced then)."""
    con.execute(
        "UPDATE conversations AS c SET window_start = s.window_start FROM sync_state AS s "
        "WHERE s.environment = c.environment AND s.channel = c.channel "
        "AND c.started_at >= s.window_start AND c.started_at < s.window_end"
    )
