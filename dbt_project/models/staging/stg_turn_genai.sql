-- One row per turn whose metadata the API served, with its conversation's window.
select
    g.conversation_id,
    g.turn_index,
    g.environment,
    g.channel,
    c.window_start,
    g.conversation_date,
    coalesce(g.model, '') as model,
    g.input_tokens,
    g.output_tokens,
    g.time_to_first_token_ms,
    {{ polyai_sync.json_array_length('g.function_calls') }} as tool_calls,
    g.cited_topic
from {{ source('polyai', 'turn_genai') }} g
join {{ source('polyai', 'conversations') }} c on c.id = g.conversation_id
