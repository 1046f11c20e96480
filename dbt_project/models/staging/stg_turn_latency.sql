-- One row per turn and latency stage, in milliseconds, with its conversation's window.
select
    l.conversation_id,
    l.turn_index,
    l.environment,
    l.channel,
    c.window_start,
    l.conversation_date,
    l.stage,
    l.latency_ms
from {{ source('polyai', 'turn_latency') }} l
join {{ source('polyai', 'conversations') }} c on c.id = l.conversation_id
