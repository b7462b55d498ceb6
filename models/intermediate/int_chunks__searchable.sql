{#- What retrieval_store must hold: every current chunk of a live document that has a vector
    of the active embedder. A view (nothing here calls a Python UDF): retrieval_store reads
    only the key columns of it to find the documents that changed, then the full rows of
    those documents. -#}
{{ config(materialized='view') }}

with

document_chunks as (
    select * from {{ ref('int_document_chunks') }}
),

latest_documents as (
    select * from {{ ref('int_documents__latest') }}
),

chunk_embeddings as (
    select * from {{ ref('chunk_embeddings') }}
),

active_embedder as (
    select * from {{ ref('int_active_embedder') }}
),

live_documents as (
    select * from latest_documents
    where not is_deleted
),

-- A row has a vector exactly when it has no error (the unit_vectors test on
-- chunk_embeddings holds that), and testing the short error column spares reading every
-- vector: `embedding is not null` reads the whole array column.
active_embeddings as (
    select chunk_embeddings.*
    from chunk_embeddings
    inner join active_embedder on chunk_embeddings.model_id = active_embedder.model_id
    where chunk_embeddings.error is null
),

current_chunks as (
    select
        document_chunks.chunk_id,
        document_chunks.doc_id,
        document_chunks.chunk_index,
        live_documents.title,
        document_chunks.heading_path,
        document_chunks.chunk_text,
        document_chunks.token_count,
        live_documents.source_uri,
        live_documents.updated_at as doc_updated_at,
        document_chunks.chunk_hash,
        document_chunks.content_hash,
        document_chunks.char_start,
        document_chunks.char_end,
        document_chunks.page_start,
        document_chunks.page_end,
        document_chunks.page_kind,
        live_documents.metadata,
        live_documents.allowed_principals
    from document_chunks
    inner join live_documents
        on
            document_chunks.doc_id = live_documents.doc_id
            and document_chunks.content_hash = live_documents.content_hash
),

searchable_chunks as (
    select
        current_chunks.chunk_id::varchar as chunk_id,
        current_chunks.doc_id::varchar as doc_id,
        current_chunks.chunk_index::integer as chunk_index,
        current_chunks.title::varchar as title,
        current_chunks.heading_path::varchar as heading_path,
        current_chunks.chunk_text::varchar as chunk_text,
        current_chunks.token_count::integer as token_count,
        current_chunks.char_start::integer as char_start,
        current_chunks.char_end::integer as char_end,
        current_chunks.page_start::integer as page_start,
        current_chunks.page_end::integer as page_end,
        current_chunks.page_kind::varchar as page_kind,
        current_chunks.source_uri::varchar as source_uri,
        current_chunks.doc_updated_at::timestamp as doc_updated_at,
        coalesce(current_chunks.metadata, '{}')::json as metadata,
        current_chunks.allowed_principals::varchar[] as allowed_principals,
        current_chunks.chunk_hash::varchar as chunk_hash,
        current_chunks.content_hash::varchar as content_hash,
        active_embeddings.model_id::varchar as model_id,
        active_embeddings.embedded_at::timestamp as embedded_at,
        active_embeddings.embedding::float[{{ var('embedding_dimension') | int }}] as embedding
    from current_chunks
    inner join active_embeddings
        on current_chunks.chunk_hash = active_embeddings.chunk_hash
)

select * from searchable_chunks
