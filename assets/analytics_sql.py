"""The KPI queries: each recomputes one analytics table for one scope's window, from the
window tables, in one transaction (delete the window's rows, insert the new ones).

Percentiles are DuckDB's ``quantile_cont`` (linear interpolation between closest ranks, as
numpy's default). Rates are over finished conversations (containment) or over turns
(silence, out-of-domain).
"""

from __future__ import annotations

_WINDOW = (
    "c.environment = $env AND c.channel = $channel "
    "AND c.started_at >= $start AND c.started_at < $end"
)

CONVERSATION_KPIS = f"""
INSERT INTO {{s}}.conversation_kpis BY NAME
WITH c AS (SELECT * FROM {{s}}.conversations c WHERE {_WINDOW}),
turn_counts AS (
    SELECT c.variant_id, count(t.turn_index) AS turns,
           count(*) FILTER (WHERE t.is_silence) AS silent,
           count(*) FILTER (WHERE t.is_ood) AS ood
    FROM c JOIN {{s}}.turns t ON t.conversation_id = c.id GROUP BY c.variant_id
),
reasons AS (
    SELECT variant_id, to_json(map(list(handoff_reason), list(n))) AS by_reason
    FROM (SELECT variant_id, handoff_reason, count(*) AS n FROM c
          WHERE handoff GROUP BY ALL) GROUP BY variant_id
),
destinations AS (
    SELECT variant_id, to_json(map(list(handoff_destination), list(n))) AS by_destination
    FROM (SELECT variant_id, handoff_destination, count(*) AS n FROM c
          WHERE handoff GROUP BY ALL) GROUP BY variant_id
)
SELECT $env AS environment, $channel AS channel, $start AS window_start,
       CAST($start AS DATE) AS conversation_date,
       coalesce(c.variant_id, '') AS variant_id, any_value(c.variant_name) AS variant_name,
       count(*) AS conversations,
       count(*) FILTER (WHERE NOT c.in_progress) AS finished,
       count(*) FILTER (WHERE c.in_progress) AS in_progress,
       count(*) FILTER (WHERE c.handoff) AS handoffs,
       (count(*) FILTER (WHERE NOT c.in_progress AND NOT c.handoff))
           / nullif(count(*) FILTER (WHERE NOT c.in_progress), 0) AS containment_rate,
       coalesce(any_value(r.by_reason), '{{{{}}}}') AS handoffs_by_reason,
       coalesce(any_value(d.by_destination), '{{{{}}}}') AS handoffs_by_destination,
       avg(c.total_duration) AS mean_duration_s,
       quantile_cont(c.total_duration, 0.5) AS p50_duration_s,
       quantile_cont(c.total_duration, 0.95) AS p95_duration_s,
       any_value(tc.turns) / count(*) AS turns_per_conversation,
       any_value(tc.silent) / nullif(any_value(tc.turns), 0) AS silence_rate,
       any_value(tc.ood) / nullif(any_value(tc.turns), 0) AS ood_rate,
       $now AS computed_at
FROM c
LEFT JOIN turn_counts tc ON tc.variant_id IS NOT DISTINCT FROM c.variant_id
LEFT JOIN reasons r ON r.variant_id IS NOT DISTINCT FROM c.variant_id
LEFT JOIN destinations d ON d.variant_id IS NOT DISTINCT FROM c.variant_id
GROUP BY c.variant_id
"""

LATENCY_KPIS = f"""
INSERT INTO {{s}}.latency_kpis BY NAME
WITH c AS (SELECT id FROM {{s}}.conversations c WHERE {_WINDOW}),
samples AS (
    SELECT 'overall' AS stage, t.latency AS ms FROM {{s}}.turns t
    WHERE t.conversation_id IN (SELECT id FROM c) AND t.latency IS NOT NULL
    UNION ALL
    SELECT l.stage, l.latency_ms FROM {{s}}.turn_latency l
    WHERE l.conversation_id IN (SELECT id FROM c) AND l.latency_ms IS NOT NULL
)
SELECT $env AS environment, $channel AS channel, $start AS window_start,
       CAST($start AS DATE) AS conversation_date, stage, count(*) AS turns,
       quantile_cont(ms, 0.5) AS p50_ms, quantile_cont(ms, 0.9) AS p90_ms,
       quantile_cont(ms, 0.95) AS p95_ms, quantile_cont(ms, 0.99) AS p99_ms,
       $now AS computed_at
FROM samples GROUP BY stage
"""

GENAI_KPIS = f"""
INSERT INTO {{s}}.genai_kpis BY NAME
WITH c AS (SELECT id FROM {{s}}.conversations c WHERE {_WINDOW})
SELECT $env AS environment, $channel AS channel, $start AS window_start,
       CAST($start AS DATE) AS conversation_date, coalesce(g.model, '') AS model,
       count(*) AS turns, coalesce(sum(g.input_tokens), 0) AS input_tokens,
       coalesce(sum(g.output_tokens), 0) AS output_tokens,
       quantile_cont(g.time_to_first_token_ms, 0.5) AS p50_time_to_first_token_ms,
       quantile_cont(g.time_to_first_token_ms, 0.95) AS p95_time_to_first_token_ms,
       coalesce(sum(json_array_length(g.function_calls)), 0) AS tool_calls,
       $now AS computed_at
FROM {{s}}.turn_genai g WHERE g.conversation_id IN (SELECT id FROM c)
GROUP BY ALL
"""

KPI_QUERIES = {
    "conversation_kpis": CONVERSATION_KPIS,
    "latency_kpis": LATENCY_KPIS,
    "genai_kpis": GENAI_KPIS,
}
