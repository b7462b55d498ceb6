{#- Render `value` as a single-quoted SQL string literal (quotes doubled). -#}
{% macro sql_string(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
