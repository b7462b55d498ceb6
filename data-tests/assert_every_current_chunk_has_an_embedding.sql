-- Fails for each current chunk of a live document that is missing from retrieval_store,
-- i.e. has no vector from the active model, and for each stored chunk that is not current.
with

current_chunks as (
    select chunks.chunk_id
    from {{ ref('int_document_chunks') }} as chunks
    inner join {{ ref('int_documents__latest') }} as documents
        on
            chunks.doc_id = documents.doc_id
            and chunks.content_hash = documents.content_hash
    where not documents.is_deleted
),

stored_chunks as (
    select chunk_id from {{ ref('retrieval_store') }}
),

missing as (
    select
        coalesce(current_chunks.chunk_id, stored_chunks.chunk_id) as chunk_id,
        case
            when stored_chunks.chunk_id is null then 'no embedding for the active model'
            else 'stored chunk is not current'
        end as problem
    from current_chunks
    full outer join stored_chunks on current_chunks.chunk_id = stored_chunks.chunk_id
    where current_chunks.chunk_id is null or stored_chunks.chunk_id is null
)

select * from missing
