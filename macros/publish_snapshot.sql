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
{%- set skipped = rag_store.publish_skip_reason(results) -%}
{%- if skipped -%}
    {%- do log("rag-store: snapshot not published: " ~ skipped, info=true) -%}
    {{ return('') }}
{%- endif -%}
{%- set store = rag_store.store_relation('retrieval_store') -%}
{#- Row count and an order-free hash of every row: a snapshot that already holds exactly
    this retrieval_store keeps its copy (and BM25 index); only the small tables change. -#}
{%- set fingerprint = run_query("select count(*)::varchar || ':' || coalesce(bit_xor(hash(store)), 0)::varchar from "
    ~ store ~ " as store").columns[0].values()[0] -%}
{%- set plan_json = run_query("select rag_publish_plan(" ~ rag_store.sql_string(target.path) ~ ", "
    ~ rag_store.sql_string(store.schema) ~ ", " ~ rag_store.sql_string(var('snapshot_path'))
    ~ ", " ~ rag_store.sql_string(fingerprint) ~ ")").columns[0].values()[0] -%}
{%- set plan = fromjson(plan_json) -%}
{%- for export in plan['exports'] -%}
    {%- if not export['optional'] or adapter.get_relation(database=store.database, schema=store.schema, identifier=export['table']) is not none -%}
        {%- do run_query("copy (" ~ export['query'] ~ ") to " ~ rag_store.sql_string(export['file']) ~ " (format parquet)") -%}
    {%- endif -%}
{%- endfor -%}
{%- set published = run_query("select rag_publish_snapshot(" ~ rag_store.sql_string(plan_json) ~ ")") -%}
{%- do log("rag-store: " ~ published.columns[0].values()[0], info=true) -%}
{% endmacro %}

{#- Why this invocation must not publish, or '' when it may. A snapshot is a whole build of this
    target: not under --empty (zero-row tables) or --defer (part of the store is another
    target's), not when anything failed or was skipped, not when retrieval_store was not
    built by this invocation (a partial selection), and not while a relation the snapshot
    exports is missing from the store's schema. -#}
{% macro publish_skip_reason(results) -%}
{%- if rag_store.invoked_with('empty') -%}
    {{ return('an --empty build') }}
{%- endif -%}
{%- if rag_store.invoked_with('defer') -%}
    {{ return('a --defer build reads part of the store from another target') }}
{%- endif -%}
{%- set built = [] -%}
{%- for result in results -%}
    {%- if result.status in ['error', 'fail', 'runtime error', 'skipped'] -%}
        {{ return(result.node.name ~ ' ' ~ result.status) }}
    {%- endif -%}
    {%- if result.node.package_name == 'rag_store' and result.node.name == 'retrieval_store' -%}
        {%- do built.append(result.status) -%}
    {%- endif -%}
{%- endfor -%}
{%- if built != ['success'] -%}
    {{ return('retrieval_store was not built by this invocation') }}
{%- endif -%}
{%- set store = rag_store.store_relation('retrieval_store') -%}
{%- for name in fromjson(run_query('select rag_publish_inputs()').columns[0].values()[0]) -%}
    {%- if adapter.get_relation(database=store.database, schema=store.schema, identifier=name) is none -%}
        {{ return(name ~ ' does not exist in ' ~ store.database ~ '.' ~ store.schema) }}
    {%- endif -%}
{%- endfor -%}
{{ return('') }}
{%- endmacro %}
