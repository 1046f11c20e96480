"""The analytics SQL, in one place: the KPI queries and the CLI's KPI summary (the checks on
a synced window are :mod:`resources.warehouse.checks`). Written once for DuckDB and PostgreSQL
in the style of :mod:`resources.warehouse.sql` (bare table names, ``$name`` values), plus the
engine's JSON functions (:class:`resources.warehouse.resource.JsonFunctions`).

KPIs: each query computes one analytics table's rows for one scope's window from the window
tables; :func:`recompute_kpis` replaces the window's rows with them in one transaction.
Percentiles are ``percentile_cont`` (linear interpolation between closest ranks, as numpy's
default). Rates are over finished conversations (containment) or over turns (silence,
out-of-domain).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from core import schema
from core.lazy import lazy_module
from core.windows import Scope, Window
from resources.warehouse.resource import JsonFunctions, Warehouse
from resources.warehouse.sql import (
    IN_WINDOW,
    Connection,
    column_list,
    count,
    quote,
    window_params,
)

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

if TYPE_CHECKING:
    import pandas as pd

# --- KPIs --------------------------------------------------------------------------------

_KEYS = (
    "$env AS environment, $channel AS channel, $start AS window_start, "
    "CAST($start AS DATE) AS conversation_date"
)


def _ratio(numerator: str, denominator: str) -> str:
    return f"CAST({numerator} AS DOUBLE PRECISION) / nullif({denominator}, 0)"


def _percentile(fraction: float, value: str) -> str:
    return f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY {value})"


def _json_or_empty(column: str) -> str:
    """The group's JSON object (one per variant: max picks it), or ``{}``."""
    return f"CAST(coalesce(max(CAST({column} AS TEXT)), '{{}}') AS JSON)"


def _handoffs_by(column: str, json: JsonFunctions) -> str:
    """Handoffs per value of ``column`` as a JSON object; a handoff without one counts under
    ``""`` (a JSON object's keys cannot be null)."""
    aggregate = json.object_agg.format(key=column, value="n")
    return (
        f"SELECT variant_id, {aggregate} AS by_{column.removeprefix('handoff_')} "
        f"FROM (SELECT variant_id, coalesce({column}, '') AS {column}, count(*) AS n FROM c "
        "WHERE handoff "
        f"GROUP BY variant_id, {column}) AS counted GROUP BY variant_id"
    )


def _conversation_kpis(json: JsonFunctions) -> str:
    finished = "count(*) FILTER (WHERE NOT c.in_progress)"
    return f"""
WITH c AS (SELECT * FROM conversations c WHERE {IN_WINDOW}),
turn_counts AS (
    SELECT c.variant_id, count(t.turn_index) AS turns,
           count(*) FILTER (WHERE t.is_silence) AS silent,
           count(*) FILTER (WHERE t.is_ood) AS ood
    FROM c JOIN turns t ON t.conversation_id = c.id GROUP BY c.variant_id
),
reasons AS ({_handoffs_by("handoff_reason", json)}),
destinations AS ({_handoffs_by("handoff_destination", json)})
SELECT {_KEYS},
       coalesce(c.variant_id, '') AS variant_id, max(c.variant_name) AS variant_name,
       count(*) AS conversations,
       {finished} AS finished,
       count(*) FILTER (WHERE c.in_progress) AS in_progress,
       count(*) FILTER (WHERE c.handoff) AS handoffs,
       {_ratio("count(*) FILTER (WHERE NOT c.in_progress AND NOT c.handoff)", finished)}
           AS containment_rate,
       {_json_or_empty("r.by_reason")} AS handoffs_by_reason,
       {_json_or_empty("d.by_destination")} AS handoffs_by_destination,
       avg(c.total_duration) AS mean_duration_s,
       {_percentile(0.5, "c.total_duration")} AS p50_duration_s,
       {_percentile(0.95, "c.total_duration")} AS p95_duration_s,
       {_ratio("max(tc.turns)", "count(*)")} AS turns_per_conversation,
       {_ratio("max(tc.silent)", "max(tc.turns)")} AS silence_rate,
       {_ratio("max(tc.ood)", "max(tc.turns)")} AS ood_rate,
       $now AS computed_at
FROM c
LEFT JOIN turn_counts tc ON tc.variant_id IS NOT DISTINCT FROM c.variant_id
LEFT JOIN reasons r ON r.variant_id IS NOT DISTINCT FROM c.variant_id
LEFT JOIN destinations d ON d.variant_id IS NOT DISTINCT FROM c.variant_id
GROUP BY c.variant_id
"""


def _latency_kpis() -> str:
    return f"""
WITH c AS (SELECT id FROM conversations c WHERE {IN_WINDOW}),
samples AS (
    SELECT 'overall' AS stage, t.latency_s * 1000 AS ms FROM turns t
    WHERE t.conversation_id IN (SELECT id FROM c) AND t.latency_s IS NOT NULL
    UNION ALL
    SELECT l.stage, l.latency_ms FROM turn_latency l
    WHERE l.conversation_id IN (SELECT id FROM c) AND l.latency_ms IS NOT NULL
)
SELECT {_KEYS}, stage, count(*) AS turns,
       {_percentile(0.5, "ms")} AS p50_ms, {_percentile(0.9, "ms")} AS p90_ms,
       {_percentile(0.95, "ms")} AS p95_ms, {_percentile(0.99, "ms")} AS p99_ms,
       $now AS computed_at
FROM samples GROUP BY stage
"""


def _genai_kpis(json: JsonFunctions) -> str:
    tool_calls = json.array_length.format(value="g.function_calls")
    return f"""
WITH c AS (SELECT id FROM conversations c WHERE {IN_WINDOW})
SELECT {_KEYS}, coalesce(g.model, '') AS model,
       count(*) AS turns, coalesce(sum(g.input_tokens), 0) AS input_tokens,
       coalesce(sum(g.output_tokens), 0) AS output_tokens,
       {_percentile(0.5, "g.time_to_first_token_ms")} AS p50_time_to_first_token_ms,
       {_percentile(0.95, "g.time_to_first_token_ms")} AS p95_time_to_first_token_ms,
       coalesce(sum({tool_calls}), 0) AS tool_calls,
       $now AS computed_at
FROM turn_genai g WHERE g.conversation_id IN (SELECT id FROM c)
GROUP BY coalesce(g.model, '')
"""


def kpi_queries(json: JsonFunctions) -> dict[str, str]:
    """Per analytics table, the query computing its rows for one window (parameters:
    :func:`resources.warehouse.sql.window_params` and ``$now``)."""
    return {
        "conversation_kpis": _conversation_kpis(json),
        "latency_kpis": _latency_kpis(),
        "genai_kpis": _genai_kpis(json),
    }


def recompute_kpis(
    warehouse: Warehouse, scope: Scope, window: Window, tables: list[str]
) -> dict[str, int]:
    """Replace one window's rows of each of ``tables`` (analytics tables) with what their KPI
    query computes from the window tables, in one transaction; the rows each now holds."""
    with warehouse.connect() as con:
        con.execute("BEGIN")
        rows = recompute_window_kpis(con, warehouse, scope, window, tables)
        con.execute("COMMIT")
    return rows


def recompute_window_kpis(
    con: Connection,
    warehouse: Warehouse,
    scope: Scope,
    window: Window,
    tables: list[str] | None = None,
) -> dict[str, int]:
    """:func:`recompute_kpis` inside the caller's transaction (every KPI table by default)."""
    key = window_params(scope, window)
    params = {**key, "now": datetime.now(UTC)}
    queries = kpi_queries(warehouse.json)
    rows = {}
    for table in tables or [t.name for t in schema.ANALYTICS_TABLES]:
        columns = column_list(schema.metadata.tables[table])
        con.execute(f"DELETE FROM {quote(table)} WHERE {IN_WINDOW}", key)
        rows[table] = count(
            con,
            f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM "
            f"({queries[table]}) AS computed",
            params,
        )
    return rows


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
