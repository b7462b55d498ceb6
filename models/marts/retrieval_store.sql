{#- The retrieval store: one row per current chunk of a live document, with its vector
    of the active embedder. Incremental per document: a build rewrites exactly the
    documents whose rows differ from int_chunks__searchable (an edit, a tombstone, new
    metadata or access, a vector that arrived, a model switch: every document at once, in
    this one transaction), so its cost follows the change, not the store. -#}
{{
    config(
        materialized='incremental',
        unique_key='doc_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
        post_hook=[
            "{{ rag_store.delete_unsearchable_documents(this) }}",
            "{{ rag_store.prune_other_model_embeddings() }}",
            "{{ rag_store.update_keyword_index(this) }}",
            "{{ rag_store.install_search_macros(this) }}",
        ],
    )
}}

{%- set row_key = rag_store.store_row_key() -%}

-- The post-hooks read these (the search macros' embedder, the vector cache they prune):
-- depends_on: {{ ref('int_active_embedder') }}
-- depends_on: {{ ref('chunk_embeddings') }}

with

searchable_chunks as (
    select * from {{ ref('int_chunks__searchable') }}
),

{% if is_incremental() %}
    stored_chunks as (
        select * from {{ this }}
    ),

    changed_rows as (
        (
            select {{ row_key | join(', ') }} from searchable_chunks
            except
            select {{ row_key | join(', ') }} from stored_chunks
        )
        union all
        (
            select {{ row_key | join(', ') }} from stored_chunks
            except
            select {{ row_key | join(', ') }} from searchable_chunks
        )
    ),

    chunks_to_write as (
        select searchable_chunks.*
        from searchable_chunks
        where searchable_chunks.doc_id in (select changed_rows.doc_id from changed_rows)
    ),
{% else %}
    chunks_to_write as (
        select * from searchable_chunks
    ),
{% endif %}

stored_now as (
    select
        chunks_to_write.*,
        (now() at time zone 'UTC') as stored_at
    from chunks_to_write
)

select * from stored_now
order by doc_id, chunk_index
