-- Per window, scope and model: turns, input and output tokens, time to first token, tool
-- calls. Rebuilt for a run's windows only.
select
    environment,
    channel,
    window_start,
    {{ polyai_sync.utc_date('window_start') }} as conversation_date,
    cast(model as varchar) as model,
    cast(count(*) as integer) as turns,
    cast(coalesce(sum(input_tokens), 0) as integer) as input_tokens,
    cast(coalesce(sum(output_tokens), 0) as integer) as output_tokens,
    cast(percentile_cont(0.5) within group (order by time_to_first_token_ms) as double precision)
        as p50_time_to_first_token_ms,
    cast(percentile_cont(0.95) within group (order by time_to_first_token_ms) as double precision)
        as p95_time_to_first_token_ms,
    cast(coalesce(sum(tool_calls), 0) as integer) as tool_calls,
    cast({{ dbt.current_timestamp() }} as timestamp with time zone) as computed_at
from {{ ref('stg_turn_genai') }}
where {{ polyai_sync.run_windows_filter() }}
group by environment, channel, window_start, model
