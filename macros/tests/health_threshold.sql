{#- Alert test on a one-row health relation. Returns one row (warn) when `column_name` is
    beyond a warn threshold, two rows (warn + error) when beyond an error threshold; pair it
    with `warn_if: ">0"` and `error_if: ">1"`. Each row carries check_name, level,
    observed_value and threshold, so `rag-store alerts` can print what was seen. -#}
{% test health_threshold(
    model, column_name, warn_above=none, error_above=none, warn_below=none, error_below=none
) %}
{%- set limits = [] -%}
{%- for level, operator, threshold in [
    ('warn', '>', warn_above), ('error', '>', error_above),
    ('warn', '<', warn_below), ('error', '<', error_below)] -%}
    {%- if threshold is not none and threshold | string | trim != '' -%}
        {%- do limits.append((level, operator, threshold | float)) -%}
    {%- endif -%}
{%- endfor -%}
{%- if limits | length == 0 -%}
    {{ exceptions.raise_compiler_error("health_threshold on " ~ column_name ~ ": give at least one threshold") }}
{%- endif -%}
with

observed as (
    select {{ column_name }}::double as observed_value
    from {{ model }}
),

breaches as (
    {%- for level, operator, threshold in limits %}
    select
        '{{ column_name }}' as check_name,
        '{{ level }}' as severity_level,
        '{{ operator }}' as comparison,
        observed_value,
        {{ threshold }} as threshold
    from observed
    where observed_value {{ operator }} {{ threshold }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

worst as (
    select * from breaches
    order by case severity_level when 'error' then 0 else 1 end
    limit 1
),

escalation as (
    {#- An error-level breach reports twice, so error_if ">1" fires. -#}
    select * from worst
    union all
    select * from worst where severity_level = 'error'
)

select * from escalation
{% endtest %}
