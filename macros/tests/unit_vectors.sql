{#- Fails for every vector whose L2 norm is not 1 (within `tolerance`). -#}
{% test unit_vectors(model, column_name, tolerance=0.001) %}
select {{ column_name }}
from {{ model }}
where abs(sqrt(list_sum(list_transform({{ column_name }}::float[], x -> x * x))) - 1)
    > {{ tolerance }}
{% endtest %}
