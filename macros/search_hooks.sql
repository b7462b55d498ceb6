{#- Hooks of retrieval_store: the rows of documents that are no longer searchable leave it
    (pre-hook), and it is made searchable on dbt's connection: its BM25 index and the search table
    macros of sql/search.sql (the same definition the published snapshot and Python use),
    installed in the store's own schema. -#}

{#- delete+insert rewrites the documents that have rows to write; a document with none left
    (deleted, or every chunk of its new version without a vector) leaves here, in the same
    transaction, so no stale row outlives its build. A pre-hook: it judges the same
    candidate documents as the model, before the model's write moves the newest stored_at. -#}
{% macro delete_unsearchable_documents(relation) -%}
{%- if not execute or not is_incremental() or not rag_store.may_write(relation) -%}
    {{ return('select 1') }}
{%- endif -%}
{%- set candidates = rag_store.store_candidate_documents(relation) -%}
delete from {{ relation }}
where
    {% if candidates is not none -%}
        {{ rag_store.doc_id_in('doc_id', candidates) }} and
    {% endif -%}
    doc_id not in (
        select searchable.doc_id from {{ ref('int_chunks__searchable') }} as searchable
        {%- if candidates is not none %}
            where {{ rag_store.doc_id_in('searchable.doc_id', candidates) }}
        {%- endif %}
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
