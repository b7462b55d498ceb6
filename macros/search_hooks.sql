{#- Post-hooks of retrieval_store: the rows of documents that are no longer searchable leave
    it, and it is made searchable on dbt's connection: its BM25 index and the search table
    macros of sql/search.sql (the same definition the published snapshot and Python use),
    installed in the store's own schema. -#}

{#- delete+insert rewrites the documents that have rows to write; a document with none left
    (deleted, or every chunk of its new version without a vector) leaves here, in the same
    transaction, so no stale row outlives its build. -#}
{% macro delete_unsearchable_documents(relation) -%}
{%- if not execute or not rag_store.may_write(relation) -%}
    {{ return('select 1') }}
{%- endif -%}
delete from {{ relation }}
where doc_id not in (
    select searchable.doc_id from {{ ref('int_chunks__searchable') }} as searchable
)
{%- endmacro %}

{#- Brings the BM25 index of `relation` up to date with it: the chunks whose id, chunk_hash or
    content_hash is new are tokenized, the rest are kept (sql/keyword_index.sql, the same
    statements the published snapshot runs), so a build costs what it changed. -#}
{% macro update_keyword_index(relation) -%}
{%- if not execute or not rag_store.may_write(relation) -%}
    {{ return('select 1') }}
{%- endif -%}
{%- set statements = run_query(
    "select rag_keyword_index_sql(" ~ rag_store.sql_string(relation.schema) ~ ", "
    ~ rag_store.sql_string(relation.identifier) ~ ")").columns[0].values()[0] -%}
{%- for statement in fromjson(statements) -%}
    {%- do run_query(statement) -%}
{%- endfor -%}
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
