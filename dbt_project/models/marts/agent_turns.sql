-- The agent turn by turn, per day, scope and variant: turns, how many the agent answered,
-- barge-ins, silences and out-of-domain turns, turn latency, and the generative AI's tool calls.
with t as (
    select t.*, c.variant_id
    from {{ ref('stg_turns') }} t
    join {{ ref('stg_conversations') }} c on c.id = t.conversation_id
),

genai as (
    select conversation_id, turn_index, tool_calls from {{ ref('stg_turn_genai') }}
)

select
    t.conversation_date,
    t.environment,
    t.channel,
    t.variant_id,
    count(*) as turns,
    count(t.agent_response) as agent_responses,
    count(*) filter (where t.barge_in) as barge_ins,
    cast(count(*) filter (where t.barge_in) as double precision) / count(*) as barge_in_rate,
    cast(count(*) filter (where t.is_silence) as double precision) / count(*) as silence_rate,
    cast(count(*) filter (where t.is_ood) as double precision) / count(*) as ood_rate,
    cast(percentile_cont(0.5) within group (order by t.latency_s * 1000) as double precision)
        as p50_latency_ms,
    cast(percentile_cont(0.95) within group (order by t.latency_s * 1000) as double precision)
        as p95_latency_ms,
    cast(coalesce(sum(g.tool_calls), 0) as bigint) as tool_calls
from t
left join genai g on g.conversation_id = t.conversation_id and g.turn_index = t.turn_index
group by t.conversation_date, t.environment, t.channel, t.variant_id
