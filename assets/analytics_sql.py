"""The KPI queries: each computes one analytics table's rows for one scope's window from the
window tables; :meth:`resources.warehouse.Warehouse.recompute_kpis` replaces the window's rows
with them in one transaction.

Written once for DuckDB and PostgreSQL: standard SQL, plus the engine's JSON aggregates
(:class:`resources.warehouse.JsonFunctions`). Percentiles are ``percentile_cont`` (linear
interpolation between closest ranks, as numpy's default). Rates are over finished
conversations (containment) or over turns (silence, out-of-domain).
"""

from __future__ import annotations

from resources.warehouse import JsonFunctions

_WINDOW = "c.environment = $env AND c.channel = $channel AND c.window_start = $start"
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
    return f"CAST(coalesce(max(CAST({column} AS TEXT)), '{{{{}}}}') AS JSON)"


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


def kpi_queries(json: JsonFunctions) -> dict[str, str]:
    """Per analytics table, the query computing its rows (``{s}``: the schema)."""
    finished = "count(*) FILTER (WHERE NOT c.in_progress)"
    conversation_kpis = f"""
WITH c AS (SELECT * FROM {{s}}.conversations c WHERE {_WINDOW}),
turn_counts AS (
    SELECT c.variant_id, count(t.turn_index) AS turns,
           count(*) FILTER (WHERE t.is_silence) AS silent,
           count(*) FILTER (WHERE t.is_ood) AS ood
    FROM c JOIN {{s}}.turns t ON t.conversation_id = c.id GROUP BY c.variant_id
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
    latency_kpis = f"""
WITH c AS (SELECT id FROM {{s}}.conversations c WHERE {_WINDOW}),
samples AS (
    SELECT 'overall' AS stage, t.latency AS ms FROM {{s}}.turns t
    WHERE t.conversation_id IN (SELECT id FROM c) AND t.latency IS NOT NULL
    UNION ALL
    SELECT l.stage, l.latency_ms FROM {{s}}.turn_latency l
    WHERE l.conversation_id IN (SELECT id FROM c) AND l.latency_ms IS NOT NULL
)
SELECT {_KEYS}, stage, count(*) AS turns,
       {_percentile(0.5, "ms")} AS p50_ms, {_percentile(0.9, "ms")} AS p90_ms,
       {_percentile(0.95, "ms")} AS p95_ms, {_percentile(0.99, "ms")} AS p99_ms,
       $now AS computed_at
FROM samples GROUP BY stage
"""
    tool_calls = json.array_length.format(value="g.function_calls")
    genai_kpis = f"""
WITH c AS (SELECT id FROM {{s}}.conversations c WHERE {_WINDOW})
SELECT {_KEYS}, coalesce(g.model, '') AS model,
       count(*) AS turns, coalesce(sum(g.input_tokens), 0) AS input_tokens,
       coalesce(sum(g.output_tokens), 0) AS output_tokens,
       {_percentile(0.5, "g.time_to_first_token_ms")} AS p50_time_to_first_token_ms,
       {_percentile(0.95, "g.time_to_first_token_ms")} AS p95_time_to_first_token_ms,
       coalesce(sum({tool_calls}), 0) AS tool_calls,
       $now AS computed_at
FROM {{s}}.turn_genai g WHERE g.conversation_id IN (SELECT id FROM c)
GROUP BY coalesce(g.model, '')
"""
    return {
        "conversation_kpis": conversation_kpis,
        "latency_kpis": latency_kpis,
        "genai_kpis": genai_kpis,
    }
