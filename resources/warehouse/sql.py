"""What every window-scoped query shares: the predicates, their parameters, and how SQL is
written here.

One templating style for all of the warehouse's SQL, on both engines:

- values are ``$name`` parameters, bound by the driver (PostgreSQL's are rewritten to psycopg's
  ``%(name)s`` by :func:`resources.warehouse.postgres_engine.pyformat`), never formatted in;
- tables are named bare (``conversations``, ``sync_state``): every connection resolves bare
  names to the warehouse's schema (DuckDB ``USE``, PostgreSQL ``search_path``), so no query
  carries the schema and a query reads the same in a test, the CLI and a check;
- identifiers built from :mod:`core.schema` (column lists, staging tables) go through
  :func:`quote`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from core.windows import Scope, Window

STAGE_PREFIX = "_stage_"
"""A window table's staging twin: ``_stage_conversations`` holds pages not yet published."""
PAGE_COLUMN = "_page"
"""The staging tables' extra column: the page a row came on."""

IN_WINDOW = "environment = $env AND channel = $channel AND window_start = $start"
"""The rows of one scope's window (parameters: :func:`window_params`), in the conversations
table and in every analytics table (they are keyed by it). A conversation belongs to the window
whose last load brought it, wherever it started: a record the API served for another window
than its ``started_at`` is in stays with the window that served it, and only a re-sync of that
window replaces or removes it (the ``timestamps_inside_the_window`` check reports it)."""

CONVERSATIONS_IN_WINDOW = f"SELECT id FROM conversations WHERE {IN_WINDOW}"
"""The ids of one scope's window's conversations: what its turns, latency and genAI rows are
selected by."""

STATE_OF_WINDOW = f"account_id = $account AND project_id = $project AND {IN_WINDOW}"
"""One window's row of ``sync_state`` (parameters: :meth:`WindowKey.params`)."""


def window_params(scope: Scope, window: Window) -> dict[str, Any]:
    """The parameters of :data:`IN_WINDOW`."""
    return {"env": scope.environment, "channel": scope.channel, "start": window.start}


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared code needs of a connection: ``$name`` parameters, bare table names
    resolved to the warehouse schema, explicit ``BEGIN``/``COMMIT``, close."""

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Cursor: ...
    def close(self) -> None: ...


def quote(identifier: str) -> str:
    """An SQL identifier in double quotes, any double quote in it doubled."""
    return '"' + identifier.replace('"', '""') + '"'


def column_list(table: sa.Table) -> str:
    """The table's columns, quoted, in declaration order."""
    return ", ".join(quote(c.name) for c in table.columns)


def count(con: Connection, sql: str, params: dict[str, object] | None = None) -> int:
    """The first column of the query's first row as an int (0 when there is none)."""
    row = con.execute(sql, params or {}).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def moment(value: Any) -> str:
    """A window start as messages show it: ``2026-01-05 00:00``."""
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, datetime) else str(value)
