{#- on-run-end hook: publishes the read-only snapshot after a build or run in which nothing
    failed or was skipped. What is published and where is decided once, in Python
    (rag_store.snapshot.publish_plan, from the dbt target's path and schema and var
    snapshot_path); this hook only runs the plan's exports on dbt's connection, which is
    the one connection that can read the store while dbt holds it. Set var
    publish_snapshot: false to skip. -#}
{% macro publish_snapshot(results) %}
{%- if not execute or flags.WHICH not in ['build', 'run'] -%}
    {{ return('') }}
{%- endif -%}
{%- if rag_store.sql_bool(var('publish_snapshot')) != 'true' -%}
    {{ return('') }}
{%- endif -%}
{%- for result in results -%}
    {%- if result.status in ['error', 'fail', 'runtime error', 'skipped'] -%}
        {%- do log("rag-store: snapshot not published: " ~ result.node.name ~ " " ~ result.status, info=true) -%}
        {{ return('') }}
    {%- endif -%}
{%- endfor -%}
{%- set store = adapter.get_relation(database=target.database, schema=target.schema, identifier='retrieval_store') -%}
{%- if store is none -%}
    {{ return('') }}
{%- endif -%}
{#- Row count and an order-free hash of every row: a snapshot that already holds exactly
    this retrieval_store keeps its copy (and BM25 index); only the small tables change. -#}
{%- set fingerprint = run_query("select count(*)::varchar || ':' || coalesce(bit_xor(hash(store)), 0)::varchar from "
    ~ store ~ " as store").columns[0].values()[0] -%}
{%- set plan_json = run_query("select rag_publish_plan(" ~ rag_store.sql_string(target.path) ~ ", "
    ~ rag_store.sql_string(target.schema) ~ ", " ~ rag_store.sql_string(var('snapshot_path'))
    ~ ", " ~ rag_store.sql_string(fingerprint) ~ ")").columns[0].values()[0] -%}
{%- set plan = fromjson(plan_json) -%}
{%- for export in plan['exports'] -%}
    {%- if not export['optional'] or adapter.get_relation(database=target.database, schema=target.schema, identifier=export['table']) is not none -%}
        {%- do run_query("copy (" ~ export['query'] ~ ") to " ~ rag_store.sql_string(export['file']) ~ " (format parquet)") -%}
    {%- endif -%}
{%- endfor -%}
{%- set published = run_query("select rag_publish_snapshot(" ~ rag_store.sql_string(plan_json) ~ ")") -%}
{%- do log("rag-store: " ~ published.columns[0].values()[0], info=true) -%}
{% endmacro %}
