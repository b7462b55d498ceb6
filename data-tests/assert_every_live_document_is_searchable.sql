-- Fails for each live document with no chunk in retrieval_store.
with

live_documents as (
    select doc_id from {{ ref('int_documents__latest') }}
    where not is_deleted
),

stored_documents as (
    select distinct doc_id from {{ ref('retrieval_store') }}
)

select live_documents.doc_id
from live_documents
left join stored_documents on live_documents.doc_id = stored_documents.doc_id
where stored_documents.doc_id is null
