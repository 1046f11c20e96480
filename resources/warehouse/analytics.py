"""Reading and writing the analytics tables from Python: a window's rows replaced (the QA sample,
the saved searches) and the CLI's KPI summary. The KPIs themselves are computed by the dbt
project's models (``dbt_project/models/marts``); the checks on a synced window are
:mod:`resources.warehouse.checks`.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from core import schema
from core.lazy import lazy_module
from core.windows import Scope, Window
from resources.warehouse.resource import Warehouse
from resources.warehouse.sql import (
    IN_WINDOW,
    quote,
    window_params,
)

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

if TYPE_CHECKING:
    import pandas as pd


def replace_window_rows(
    warehouse: Warehouse, table: str, scope: Scope, window: Window, rows: pd.DataFrame
) -> None:
    """Replace one scope's window of an analytics table with ``rows``, atomically."""
    columns = schema.arrow_schema(schema.metadata.tables[table])
    # (an empty frame's columns have no dtype Arrow could cast: nothing to convert)
    batch = (
        pa.Table.from_pandas(rows, schema=columns, preserve_index=False)
        if len(rows)
        else columns.empty_table()
    )
    with warehouse.connect() as con:
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {quote(table)} WHERE {IN_WINDOW}", window_params(scope, window))
        if batch.num_rows:
            warehouse.insert(con, table, batch)
        con.execute("COMMIT")


def kpi_summary(warehouse: Warehouse, first: date, last: date) -> list[tuple[Any, ...]]:
    """Per day and scope from ``first`` to ``last``: (day, ``env.channel``, conversations,
    handoffs, containment rate, mean duration in s, p95 overall latency in ms), from the KPI
    tables (what ``polyai-sync demo`` prints)."""
    with warehouse.connect(read_only=True) as con:
        return con.execute(
            """
            SELECT k.conversation_date, k.environment || '.' || k.channel AS scope,
                   sum(k.conversations), sum(k.handoffs),
                   CAST(sum(k.finished - k.handoffs) AS DOUBLE PRECISION)
                       / nullif(sum(k.finished), 0),
                   sum(k.mean_duration_s * k.conversations) / sum(k.conversations),
                   max(l.p95_ms)
            FROM conversation_kpis k
            LEFT JOIN latency_kpis l
              ON l.environment = k.environment AND l.channel = k.channel
             AND l.window_start = k.window_start AND l.stage = 'overall'
            WHERE k.conversation_date BETWEEN $first AND $last
            GROUP BY k.conversation_date, k.environment, k.channel
            ORDER BY k.conversation_date, scope
            """,
            {"first": first, "last": last},
        ).fetchall()
