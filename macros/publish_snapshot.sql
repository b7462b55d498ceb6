{#- on-run-end hook: publishes the read-only snapshot after a build or run in which nothing
    failed or was skipped. What is published, where and how is decided once, in Python
    (rag_store.snapshot.publish_plan, from the dbt target's path and schema and var
    snapshot_path): a copy of the current snapshot patched with the documents that changed.
    This hook runs the plan's statements on dbt's connection, the one connection that can
    read the store while dbt holds it, then has the patched file swapped in. Set var
    publish_snapshot: false to skip, var snapshot_parquet: false to publish no Parquet copy. -#}
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
{#- Only retrieval_store's build writes its rows, and it stamps every row it writes with its
    own stored_at: a row of the snapshot with the same chunk_id and stored_at is the same
    row. Three columns compare in a tenth of the time of the store's row key. -#}
{%- set published_row_key = ['doc_id', 'chunk_id', 'stored_at'] -%}
{%- set plan_json = run_query("select rag_publish_plan(" ~ rag_store.sql_string(target.path) ~ ", "
    ~ rag_store.sql_string(store.database) ~ ", " ~ rag_store.sql_string(store.schema) ~ ", "
    ~ rag_store.sql_string(var('snapshot_path')) ~ ", "
    ~ rag_store.sql_string(tojson(published_row_key)) ~ ", "
    ~ (var('embedding_dimension') | int) ~ ", current_database())").columns[0].values()[0] -%}
{%- set plan = fromjson(plan_json) -%}
{%- do plan.update({'write_parquet': rag_store.sql_bool(var('snapshot_parquet')) == 'true'}) -%}
{%- for statement in plan['statements'] -%}
    {%- if not statement['requires'] or adapter.get_relation(database=store.database, schema=store.schema, identifier=statement['requires']) is not none -%}
        {%- set sql = statement['sql'] -%}
        {%- if statement['expand'] -%}
            {#- The changed doc_ids as a literal list, which DuckDB pushes into the scans. -#}
            {%- set sql = run_query("select rag_publish_expand(" ~ rag_store.sql_string(sql)
                ~ ", (select coalesce(list(doc_id order by doc_id), []::varchar[])"
                ~ " from rag_publish_changes))").columns[0].values()[0] -%}
        {%- endif -%}
        {%- do run_query(sql) -%}
    {%- endif -%}
{%- endfor -%}
{%- set published = run_query("select rag_publish_swap(" ~ rag_store.sql_string(tojson(plan)) ~ ")") -%}
{%- do log("rag-store: " ~ published.columns[0].values()[0], info=true) -%}
{% endmacro %}

{#- The columns of retrieval_store that decide whether a stored row is still right: the rest
    of a row is a function of them (chunk text, offsets and heading path of chunk_hash and
    content_hash; the vector and embedded_at of chunk_hash and model_id). retrieval_store
    rewrites exactly the documents whose rows differ in these. -#}
{% macro store_row_key() -%}
{{ return([
    'chunk_id', 'doc_id', 'chunk_hash', 'content_hash', 'model_id', 'title', 'source_uri',
    'doc_updated_at', 'page_start', 'page_end', 'metadata', 'allowed_principals',
]) }}
{%- endmacro %}

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
