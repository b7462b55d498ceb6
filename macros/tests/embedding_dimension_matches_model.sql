{#- Fails for every vector in `column_name` whose dimension is not the active embedder's
    (int_active_embedder, which itself refuses an embedding_dimension var that disagrees
    with the model). -#}
{% test embedding_dimension_matches_model(model, column_name) %}
with

active_embedder as (
    select * from {{ ref('int_active_embedder') }}
),

mismatches as (
    select
        len(tested.{{ column_name }}::float[]) as observed_dimension,
        active_embedder.dimension as expected_dimension
    from {{ model }} as tested
    cross join active_embedder
    where len(tested.{{ column_name }}::float[]) != active_embedder.dimension
)

select * from mismatches
{% endtest %}
