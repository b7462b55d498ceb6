{#- Fails for every vector whose L2 norm is not 1 (within `tolerance`) or that has a missing
    element and, given an `error_column`, for every row with neither a vector nor an error
    or with both: readers tell a vector from a failure by the error alone, which is cheaper
    than reading the vector.

    Given `verified_in` and `stamp_column`, rows stamped before the newest `stored_at` of
    the relation `verified_in` (same schema) are skipped: `model` only appends, and a build
    writes `verified_in` only after this test passed, so those rows were checked by then. It
    is looked up by name, not ref(), which would make the test wait for it. The bound is a
    constant and the stamps grow with the appends, so DuckDB skips the checked rows by block,
    their vectors unread. -#}
{% test unit_vectors(
    model, column_name, tolerance=0.001, error_column=none, verified_in=none, stamp_column=none
) %}
{%- set vector = column_name ~ '::float[]' %}
{%- set checked_before = none -%}
{%- if verified_in and stamp_column and execute -%}
    {%- set verified = adapter.get_relation(
        database=model.database, schema=model.schema, identifier=verified_in) -%}
    {%- if verified is not none -%}
        {#- a literal, not a subquery: DuckDB prunes a scan by a constant bound only -#}
        {%- set checked_before = run_query(
            "select strftime(max(stored_at), '%Y-%m-%d %H:%M:%S.%f') from " ~ verified
        ).columns[0].values()[0] -%}
    {%- endif -%}
{%- endif %}
select {{ column_name }}
from {{ model }}
where
    (
        -- a CASE calls list_inner_product (vectorised: four times faster than squaring
        -- each element in a lambda) on whole vectors only; it refuses a null or a null
        -- element
        case
            when {{ column_name }} is null then false
            when list_count({{ vector }}) != len({{ vector }}) then true
            else abs(sqrt(list_inner_product({{ vector }}, {{ vector }})) - 1) > {{ tolerance }}
        end
        {%- if error_column %}
            or ({{ column_name }} is null) = ({{ error_column }} is null)
        {%- endif %}
    )
    {%- if checked_before is not none %}
        and {{ stamp_column }} >= '{{ checked_before }}'::timestamp
    {%- endif %}
{% endtest %}
