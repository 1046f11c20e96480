{#- A run rebuilds its own windows: `polyai_windows` lists them as [environment, channel,
    window start (ISO 8601)]; unset (a build by hand), every window. -#}

{% macro run_windows_filter(alias=none) -%}
  {%- set windows = var('polyai_windows', none) -%}
  {%- set prefix = alias ~ '.' if alias else '' -%}
  {%- if windows is none -%}
    true
  {%- elif windows | length == 0 -%}
    false
  {%- else -%}
    ({{ prefix }}environment, {{ prefix }}channel, {{ prefix }}window_start) in (
    {%- for window in windows %}
      ({{ polyai_sync.sql_string(window[0]) }}, {{ polyai_sync.sql_string(window[1]) }},
       cast({{ polyai_sync.sql_string(window[2]) }} as timestamp with time zone))
      {%- if not loop.last %},{% endif %}
    {%- endfor %})
  {%- endif -%}
{%- endmacro %}

{% macro sql_string(value) -%}
  '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{#- Before an incremental KPI model inserts its windows, in the same transaction: the rows
    those windows held (all of them, for a build by hand). -#}
{% macro delete_run_windows() -%}
  {%- if is_incremental() -%}
    delete from {{ this }} where {{ polyai_sync.run_windows_filter() }}
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}

{#- The UTC date of a window start (a timestamp with time zone), whatever the session's zone. -#}
{% macro utc_date(column) -%}
  cast(({{ column }} at time zone 'UTC') as date)
{%- endmacro %}
