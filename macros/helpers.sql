{#- Small helpers shared by macros: SQL string and boolean literals, column checks. -#}

{#- Render `value` as a single-quoted SQL string literal (quotes doubled). -#}
{% macro sql_string(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{#- Render a var-like value (true/false, 'true', 1, 'yes', ...) as a SQL boolean literal. -#}
{% macro sql_bool(value) -%}
    {{ 'true' if value | string | lower in ['true', '1', 'yes', 'on'] else 'false' }}
{%- endmacro %}

{#- Whether the on-call alert tests run in this invocation (var alert_tests; see dbt_project.yml). -#}
{% macro alert_tests_enabled() -%}
    {{ return(rag_store.sql_bool(var('alert_tests')) == 'true') }}
{%- endmacro %}

{#- Whether the existing `relation` has a column `name` (a store built by an older version may
    lack one that append_new_columns adds only after the model's query ran). In a unit test
    `relation` is the name of a given input, whose rows carry the model's current columns. -#}
{% macro has_column(relation, name) -%}
    {%- if relation is string -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    {{ return(name in names) }}
{%- endmacro %}
