{#- The retrieval store: one row per current chunk of a live document, with its vector
    of the active embedder. Incremental per document: a build rewrites exactly the
    documents whose rows differ from int_chunks__searchable (an edit, a tombstone, new
    metadata or access, a vector that arrived, a model switch: every document at once, in
    this one transaction). It compares only the documents upstream models stamped since
    its last write (rag_store.store_candidate_documents), so its cost follows the change,
    not the store. -#}
{{
    config(
        materialized='incremental',
        unique_key='doc_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        contract={'enforced': true},
        pre_hook=[
            "{{ rag_store.delete_unsearchable_documents(this) }}",
        ],
        post_hook=[
            "{{ rag_store.prune_other_model_embeddings() }}",
            "{{ rag_store.update_keyword_index(this) }}",
            "{{ rag_store.install_search_macros(this) }}",
        ],
    )
}}

{%- set row_key = rag_store.store_row_key() -%}
{#- none: compare every document; else only these (rag_store.store_candidate_documents) -#}
{%- set candidates = rag_store.store_candidate_documents(this) -%}

-- The post-hooks read these (the search macros' embedder, the vector cache they prune):
-- depends_on: {{ ref('int_active_embedder') }}
-- depends_on: {{ ref('chunk_embeddings') }}
-- store_candidate_documents reads the upstream stamps:
-- depends_on: {{ ref('int_documents__latest') }}
-- depends_on: {{ ref('int_document_chunks') }}

with

-- not materialized: each reference below reads only the columns it needs (the row key
-- to compare, every column only for the documents that changed), so the vectors of
-- unchanged documents are never read.
searchable_chunks as not materialized (
    select * from {{ ref('int_chunks__searchable') }}
    {%- if candidates is not none %}
        where {{ rag_store.doc_id_in('doc_id', candidates) }}
    {%- endif %}
),

{% if is_incremental() %}
    stored_chunks as not materialized (
        select * from {{ this }}
        {%- if candidates is not none %}
            where {{ rag_store.doc_id_in('doc_id', candidates) }}
        {%- endif %}
    ),

    -- One pass over each side: a row key found on one side only marks its document.
    both_sides as (
        select
            {{ row_key | join(', ') }},
            1 as side
        from searchable_chunks
        union all
        select
            {{ row_key | join(', ') }},
            2 as side
        from stored_chunks
    ),

    changed_documents as (
        select distinct doc_id from (
            select doc_id
            from both_sides
            group by {{ row_key | join(', ') }}
            having min(side) = max(side)
        ) as one_sided
    ),

    changed_chunks as (
        select searchable_chunks.*
        from searchable_chunks
        where searchable_chunks.doc_id in (select changed_documents.doc_id from changed_documents)
    ),

    -- The changed chunks' vectors, looked up by key: DuckDB then reads the vectors of these
    -- chunk hashes only (an IN filter pushed into the scan), where taking them through the
    -- view read every vector of the store before the filter on doc_id.
    chunks_to_write as (
        select changed_chunks.* replace (
            vectors.embedding::float[{{ var('embedding_dimension') | int }}] as embedding
        )
        from changed_chunks
        inner join {{ ref('chunk_embeddings') }} as vectors
            on
                changed_chunks.chunk_hash = vectors.chunk_hash
                and changed_chunks.model_id = vectors.model_id
                and vectors.error is null
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
