{#- Post-hooks of retrieval_store that make it searchable on dbt's connection: its BM25
    index and the search table macros of sql/search.sql (the same definition the published
    snapshot and Python use), installed in the store's own schema. -#}

{#- (Re)builds the BM25 index of `relation` unless the indexed columns are unchanged since
    the index was built. The index is keyed by chunk_id, so it stays valid when dbt
    recreates the table with the same rows; a fingerprint of the indexed text is kept in a
    table inside the index's own schema (dropped with it on every rebuild). -#}
{% macro create_keyword_index(relation) -%}
{%- if not execute or not rag_store.may_write(relation) -%}
    {{ return('select 1') }}
{%- endif -%}
{%- set index_schema = 'fts_' ~ relation.schema ~ '_' ~ relation.identifier -%}
{%- set fingerprint = run_query(
    "select count(*)::varchar || ':' || coalesce(bit_xor(hash(chunk_id, title, heading_path, "
    ~ "chunk_text)), 0)::varchar from " ~ relation).columns[0].values()[0] -%}
{%- set state = adapter.get_relation(
    database=relation.database, schema=index_schema, identifier='rag_indexed_content') -%}
{%- if state is not none -%}
    {%- set indexed = run_query('select fingerprint from ' ~ state).columns[0].values() -%}
    {%- if indexed | length == 1 and indexed[0] == fingerprint -%}
        {%- do log('rag-store: keyword index of ' ~ relation.identifier ~ ' is current', info=true) -%}
        {{ return('select 1') }}
    {%- endif -%}
{%- endif -%}
{%- set index_sql = run_query(
    "select rag_keyword_index_sql(" ~ rag_store.sql_string(relation.schema) ~ ", "
    ~ rag_store.sql_string(relation.identifier) ~ ")").columns[0].values()[0] -%}
{%- do run_query(index_sql) -%}
{%- do run_query(
    "create or replace table " ~ index_schema ~ ".rag_indexed_content as select '"
    ~ fingerprint ~ "' as fingerprint") -%}
select 1
{%- endmacro %}

{#- Installs the search table macros for `relation` (retrieval_store) in its schema, bound
    to int_active_embedder for the store's model_id. -#}
{% macro install_search_macros(relation) -%}
{%- if not execute or not rag_store.may_write(relation) -%}
    {{ return('select 1') }}
{%- endif -%}
{%- set embedder = ref('int_active_embedder') -%}
{%- set statements = run_query(
    "select rag_search_macros_sql(" ~ rag_store.sql_string(relation.schema) ~ ", "
    ~ rag_store.sql_string(relation.identifier) ~ ", "
    ~ rag_store.sql_string(embedder.schema) ~ ", "
    ~ rag_store.sql_string(embedder.identifier) ~ ", "
    ~ (var('embedding_dimension') | int) ~ ")").columns[0].values()[0] -%}
{%- for statement in fromjson(statements) -%}
    {%- do run_query(statement) -%}
{%- endfor -%}
select 1
{%- endmacro %}
