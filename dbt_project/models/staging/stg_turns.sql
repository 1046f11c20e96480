-- One row per turn, with its conversation's window (turns carry the scope and date, not the
-- window): no raw JSON, no user input text.
select
    t.conversation_id,
    t.turn_index,
    t.environment,
    t.channel,
    c.window_start,
    t.conversation_date,
    t.agent_response,
    t.user_input_datetime,
    t.agent_response_datetime,
    t.latency_s,
    t.barge_in,
    t.is_ood,
    t.is_silence
from {{ source('polyai', 'turns') }} t
join {{ source('polyai', 'conversations') }} c on c.id = t.conversation_id
