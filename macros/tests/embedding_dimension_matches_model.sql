{#- Fails when vectors in `column_name` do not have the embedder's dimension, or when the
    `embedding_dimension` var disagrees with the embedder. -#}
{% test embedding_dimension_matches_model(model, column_name, embedder) %}
{%- set embedder_literal = rag_store.sql_string(embedder) -%}
with

model_dimension as (
    select rag_model_dimension({{ embedder_literal }}) as dimension
),

mismatches as (
    select
        'vector' as kind,
        len({{ column_name }}::float[]) as observed_dimension,
        model_dimension.dimension as expected_dimension
    from {{ model }}
    cross join model_dimension
    where len({{ column_name }}::float[]) != model_dimension.dimension

    union all

    select
        'var embedding_dimension' as kind,
        {{ var('embedding_dimension') | int }} as observed_dimension,
        dimension as expected_dimension
    from model_dimension
    where dimension != {{ var('embedding_dimension') | int }}
)

select * from mismatches
{% endtest %}
