-- Per window, scope and stage: turn latency percentiles in milliseconds, overall (the API's
-- turn latency) and per stage of a latency breakdown. Rebuilt for a run's windows only.
with samples as (
    select environment, channel, window_start, 'overall' as stage, latency_s * 1000 as ms
    from {{ ref('stg_turns') }}
    where latency_s is not null and {{ polyai_sync.run_windows_filter() }}
    union all
    select environment, channel, window_start, stage, cast(latency_ms as double precision)
    from {{ ref('stg_turn_latency') }}
    where latency_ms is not null and {{ polyai_sync.run_windows_filter() }}
)

select
    environment,
    channel,
    window_start,
    {{ polyai_sync.utc_date('window_start') }} as conversation_date,
    cast(stage as varchar) as stage,
    cast(count(*) as integer) as turns,
    cast(percentile_cont(0.5) within group (order by ms) as double precision) as p50_ms,
    cast(percentile_cont(0.9) within group (order by ms) as double precision) as p90_ms,
    cast(percentile_cont(0.95) within group (order by ms) as double precision) as p95_ms,
    cast(percentile_cont(0.99) within group (order by ms) as double precision) as p99_ms,
    cast({{ dbt.current_timestamp() }} as timestamp with time zone) as computed_at
from samples
group by environment, channel, window_start, stage
