{#- on-run-end hook: after a build or run in which nothing failed or was skipped, export the
    analyst-facing tables to Parquet and publish them as a read-only DuckDB snapshot (with a
    BM25 index and search table macros) plus a Parquet copy of retrieval_store, both swapped
    in atomically by rename. Set var publish_snapshot: false to skip. -#}
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
{%- set paths = rag_store.snapshot_paths() -%}
{%- set export_dir = paths.snapshot ~ '.export' -%}
{%- set schema = target.schema -%}
{#- Row count and an order-free hash of every row: when the published snapshot already
    holds exactly this retrieval_store, it is not exported again, and the snapshot's copy
    (with its BM25 index) is reused; only the small tables are replaced. -#}
{%- set fingerprint = run_query("select count(*)::varchar || ':' || coalesce(bit_xor(hash(store)), 0)::varchar from "
    ~ schema ~ ".retrieval_store as store").columns[0].values()[0] -%}
{%- set reuse = run_query("select rag_snapshot_is_current(" ~ rag_store.sql_string(paths.snapshot)
    ~ ", " ~ rag_store.sql_string(fingerprint) ~ ")").columns[0].values()[0] -%}
{%- set exports = {
    'retrieval_store': 'select * from ' ~ schema ~ '.retrieval_store',
    'documents': 'select doc_id, title, source_uri, updated_at, _loaded_at from '
        ~ schema ~ '.int_documents__latest where not is_deleted',
    'documents_rejected': 'select * from ' ~ schema ~ '.documents_rejected',
    'pipeline_health': 'select * from ' ~ schema ~ '.pipeline_health',
    'embedding_runs': 'select * from ' ~ schema ~ '.embedding_runs',
    'store_info': 'select model_id, model_reference, dimension, '
        ~ "(now() at time zone 'UTC') as published_at, "
        ~ rag_store.sql_string(fingerprint) ~ ' as retrieval_store_fingerprint from '
        ~ schema ~ '.int_active_embedder',
} -%}
{%- do run_query("select rag_prepare_export(" ~ rag_store.sql_string(export_dir) ~ ")") -%}
{%- for name, query in exports.items() -%}
    {%- if name == 'retrieval_store' and reuse -%}
    {%- elif name != 'embedding_runs' or adapter.get_relation(database=target.database, schema=schema, identifier='embedding_runs') is not none -%}
        {%- do run_query("copy (" ~ query ~ ") to " ~ rag_store.sql_string(export_dir ~ '/' ~ name ~ '.parquet') ~ " (format parquet)") -%}
    {%- endif -%}
{%- endfor -%}
{%- set published = run_query("select rag_publish_snapshot(" ~ rag_store.sql_string(export_dir) ~ ", "
    ~ rag_store.sql_string(paths.snapshot) ~ ", " ~ rag_store.sql_string(paths.parquet) ~ ")") -%}
{%- do log("rag-store: " ~ published.columns[0].values()[0], info=true) -%}
{% endmacro %}

{#- Where the snapshot goes: var snapshot_path, else <database>_snapshot.duckdb beside the
    store; the Parquet copy of retrieval_store sits next to it. -#}
{% macro snapshot_paths() %}
{%- set database = env_var('RAG_STORE_DB', 'warehouse/rag_store.duckdb') -%}
{%- set snapshot = var('snapshot_path') | trim -%}
{%- if not snapshot -%}
    {%- set snapshot = (database[:-7] if database.endswith('.duckdb') else database) ~ '_snapshot.duckdb' -%}
{%- endif -%}
{{ return({'snapshot': snapshot, 'parquet': snapshot[:-7] ~ '_retrieval_store.parquet'}) }}
{% endmacro %}
