{#- JSON functions, per engine. -#}

{% macro json_object_agg(key, value) -%}
  {{ return(adapter.dispatch('json_object_agg', 'polyai_sync')(key, value)) }}
{%- endmacro %}
{% macro duckdb__json_object_agg(key, value) -%} json_group_object({{ key }}, {{ value }}) {%- endmacro %}
{% macro default__json_object_agg(key, value) -%} json_object_agg({{ key }}, {{ value }}) {%- endmacro %}

{#- The length of a JSON array; null for anything else. -#}
{% macro json_array_length(value) -%}
  {{ return(adapter.dispatch('json_array_length', 'polyai_sync')(value)) }}
{%- endmacro %}
{% macro duckdb__json_array_length(value) -%} json_array_length({{ value }}) {%- endmacro %}
{% macro default__json_array_length(value) -%}
  case when json_typeof({{ value }}) = 'array' then json_array_length({{ value }}) end
{%- endmacro %}

{#- The group's JSON object (one per group: max picks it), or {}. -#}
{% macro json_or_empty(column) -%}
  cast(coalesce(max(cast({{ column }} as text)), '{}') as json)
{%- endmacro %}
