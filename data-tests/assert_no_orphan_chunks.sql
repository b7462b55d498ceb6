-- Fails when int_document_chunks still holds chunks of a document that is not live.
with

health as (
    select * from {{ ref('pipeline_health_current') }}
)

select
    build_id,
    orphan_chunks
from health
where orphan_chunks > 0
