-- Per window, scope and variant: conversations, finished and in progress, containment, hand-offs
-- by reason and destination, duration, turns per conversation, silence and out-of-domain
-- rates. Rates are over finished conversations (containment) or over turns; percentiles are
-- percentile_cont (linear interpolation between closest ranks). Rebuilt for a run's windows
-- only (macros/windows.sql), into the table the warehouse schema declares (core/schema.py).
with c as (
    select * from {{ ref('stg_conversations') }} where {{ polyai_sync.run_windows_filter() }}
),

turn_counts as (
    select
        c.environment, c.channel, c.window_start, c.variant_id,
        count(t.turn_index) as turns,
        count(*) filter (where t.is_silence) as silent,
        count(*) filter (where t.is_ood) as ood
    from c
    join {{ ref('stg_turns') }} t on t.conversation_id = c.id
    group by c.environment, c.channel, c.window_start, c.variant_id
),

handoffs as (
    select environment, channel, window_start, variant_id,
           coalesce(handoff_reason, '') as reason,
           coalesce(handoff_destination, '') as destination
    from c where handoff
),

reasons as (
    select environment, channel, window_start, variant_id,
           {{ polyai_sync.json_object_agg('reason', 'n') }} as by_reason
    from (
        select environment, channel, window_start, variant_id, reason, count(*) as n
        from handoffs group by environment, channel, window_start, variant_id, reason
    ) counted
    group by environment, channel, window_start, variant_id
),

destinations as (
    select environment, channel, window_start, variant_id,
           {{ polyai_sync.json_object_agg('destination', 'n') }} as by_destination
    from (
        select environment, channel, window_start, variant_id, destination, count(*) as n
        from handoffs group by environment, channel, window_start, variant_id, destination
    ) counted
    group by environment, channel, window_start, variant_id
)

select
    c.environment,
    c.channel,
    c.window_start,
    {{ polyai_sync.utc_date('c.window_start') }} as conversation_date,
    cast(c.variant_id as varchar) as variant_id,
    cast(max(c.variant_name) as varchar) as variant_name,
    cast(count(*) as integer) as conversations,
    cast(count(*) filter (where not c.in_progress) as integer) as finished,
    cast(count(*) filter (where c.in_progress) as integer) as in_progress,
    cast(count(*) filter (where c.handoff) as integer) as handoffs,
    cast(count(*) filter (where not c.in_progress and not c.handoff) as double precision)
        / nullif(count(*) filter (where not c.in_progress), 0) as containment_rate,
    {{ polyai_sync.json_or_empty('r.by_reason') }} as handoffs_by_reason,
    {{ polyai_sync.json_or_empty('d.by_destination') }} as handoffs_by_destination,
    cast(avg(c.total_duration) as double precision) as mean_duration_s,
    cast(percentile_cont(0.5) within group (order by c.total_duration) as double precision)
        as p50_duration_s,
    cast(percentile_cont(0.95) within group (order by c.total_duration) as double precision)
        as p95_duration_s,
    cast(max(tc.turns) as double precision) / nullif(count(*), 0) as turns_per_conversation,
    cast(max(tc.silent) as double precision) / nullif(max(tc.turns), 0) as silence_rate,
    cast(max(tc.ood) as double precision) / nullif(max(tc.turns), 0) as ood_rate,
    cast({{ dbt.current_timestamp() }} as timestamp with time zone) as computed_at
from c
left join turn_counts tc
    on tc.environment = c.environment and tc.channel = c.channel
   and tc.window_start = c.window_start and tc.variant_id = c.variant_id
left join reasons r
    on r.environment = c.environment and r.channel = c.channel
   and r.window_start = c.window_start and r.variant_id = c.variant_id
left join destinations d
    on d.environment = c.environment and d.channel = c.channel
   and d.window_start = c.window_start and d.variant_id = c.variant_id
group by c.environment, c.channel, c.window_start, c.variant_id
