{#- Fails for every vector in `column_name` whose dimension is not the active embedder's
    (int_active_embedder, which itself refuses an embedding_dimension var that disagrees
    with the model). A fixed-size FLOAT[d] column can hold vectors of d floats only, so
    its declared type settles the test without reading a vector; a FLOAT[] column is read
    row by row. -#}
{% test embedding_dimension_matches_model(model, column_name) %}
{%- set declared = namespace(size=none) -%}
{%- if execute and model.identifier is defined -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- set fixed = modules.re.match('^FLOAT\[(\d+)\]$', column.dtype | upper) -%}
        {%- if column.name | lower == column_name | lower and fixed -%}
            {%- set declared.size = fixed.group(1) | int -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif -%}
with

active_embedder as (
    select * from {{ ref('int_active_embedder') }}
),

{% if declared.size is not none %}
    mismatches as (
        select
            {{ declared.size }} as observed_dimension,
            active_embedder.dimension as expected_dimension
        from active_embedder
        where active_embedder.dimension != {{ declared.size }}
    )
{% else %}
    mismatches as (
        select
            len(tested.{{ column_name }}::float[]) as observed_dimension,
            active_embedder.dimension as expected_dimension
        from {{ model }} as tested
        cross join active_embedder
        where len(tested.{{ column_name }}::float[]) != active_embedder.dimension
    )
{% endif %}

select * from mismatches
{% endtest %}
