-- Hand-offs to a human, per day, scope, variant, reason and destination: how many, their share
-- of the finished conversations, and how long and how many turns the agent held them first.
with c as (
    select * from {{ ref('stg_conversations') }}
),

turns as (
    select conversation_id, count(*) as turns from {{ ref('stg_turns') }} group by conversation_id
),

finished as (
    select conversation_date, environment, channel, variant_id, count(*) as finished
    from c where not in_progress
    group by conversation_date, environment, channel, variant_id
)

select
    c.conversation_date,
    c.environment,
    c.channel,
    c.variant_id,
    coalesce(c.handoff_reason, '') as handoff_reason,
    coalesce(c.handoff_destination, '') as handoff_destination,
    count(*) as handoffs,
    cast(count(*) as double precision) / nullif(max(f.finished), 0) as share_of_finished,
    cast(avg(c.total_duration) as double precision) as mean_duration_s,
    cast(avg(coalesce(t.turns, 0)) as double precision) as mean_turns
from c
left join turns t on t.conversation_id = c.id
left join finished f
    on f.conversation_date = c.conversation_date and f.environment = c.environment
   and f.channel = c.channel and f.variant_id = c.variant_id
where c.handoff
group by c.conversation_date, c.environment, c.channel, c.variant_id,
         coalesce(c.handoff_reason, ''), coalesce(c.handoff_destination, '')
