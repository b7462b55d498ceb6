{#- One row per chunk of each live document, cut by the rag_chunk UDF with the active
    embedder's tokenizer; incremental per changed document. -#}
{{
    config(
        materialized='incremental',
        unique_key='doc_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=[
            "{% if rag_store.may_write(this) %}
                delete from {{ this }} where doc_id not in (
                    select doc_id from {{ ref('int_documents__latest') }} where not is_deleted
                )
            {% else %} select 1 {% endif %}"
        ],
    )
}}

with

latest_documents as (
    select * from {{ ref('int_documents__latest') }}
),

chunker as (
    select * from {{ ref('int_active_embedder') }}
),

already_chunked as (
    {% if is_incremental() %}
        select distinct
            doc_id,
            content_hash,
            chunker_fingerprint
        from {{ this }}
    {% else %}
        select
            null::varchar as doc_id,
            null::varchar as content_hash,
            null::varchar as chunker_fingerprint
        where false
    {% endif %}
),

documents_to_chunk as (
    select
        latest_documents.doc_id,
        latest_documents.title,
        latest_documents.body,
        latest_documents.content_hash,
        latest_documents.pages,
        latest_documents.page_kind,
        chunker.chunker_fingerprint,
        chunker.model_reference,
        chunker.max_chunk_tokens,
        chunker.chunk_overlap_tokens,
        chunker.chunk_context_header
    from latest_documents
    cross join chunker
    left join already_chunked
        on
            latest_documents.doc_id = already_chunked.doc_id
            and latest_documents.content_hash = already_chunked.content_hash
            and chunker.chunker_fingerprint = already_chunked.chunker_fingerprint
    where
        not latest_documents.is_deleted
        and already_chunked.doc_id is null
),

exploded as (
    select
        documents_to_chunk.doc_id,
        documents_to_chunk.content_hash,
        documents_to_chunk.chunker_fingerprint,
        documents_to_chunk.pages,
        documents_to_chunk.page_kind,
        -- the struct expands into its fields: no alias is possible
        unnest(rag_chunk(  -- noqa: AL03
            documents_to_chunk.body,
            documents_to_chunk.title,
            documents_to_chunk.model_reference,
            documents_to_chunk.max_chunk_tokens,
            documents_to_chunk.chunk_overlap_tokens,
            documents_to_chunk.chunk_context_header
        ), recursive := true)
    from documents_to_chunk
),

chunks as (
    select
        exploded.doc_id || ':' || exploded.chunk_index as chunk_id,
        exploded.doc_id,
        exploded.chunk_index,
        exploded.heading_path,
        exploded.chunk_text,
        exploded.embedding_text,
        exploded.token_count,
        exploded.char_start,
        exploded.char_end,
        -- the pages (or slides) a chunk spans: pages holds where each one starts in the body
        case
            when len(exploded.pages) > 0
                then len(list_filter(exploded.pages, page -> page <= exploded.char_start))
        end as page_start,
        case
            when len(exploded.pages) > 0
                then len(list_filter(exploded.pages, page -> page < exploded.char_end))
        end as page_end,
        exploded.page_kind,
        sha256(exploded.chunker_fingerprint || chr(31) || exploded.embedding_text) as chunk_hash,
        exploded.content_hash,
        exploded.chunker_fingerprint,
        (now() at time zone 'UTC') as chunked_at
    from exploded
)

select * from chunks
