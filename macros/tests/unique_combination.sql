{#- Fails for every combination of `columns` that occurs more than once. -#}
{% test unique_combination(model, columns) %}
{%- if columns is string or columns | length == 0 -%}
    {{ exceptions.raise_compiler_error("unique_combination: `columns` must be a non-empty list") }}
{%- endif %}
select
    {{ columns | join(', ') }},
    count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
