-- Fails when a live document has no chunk in retrieval_store, or only some of its chunks.
with

health as (
    select * from {{ ref('pipeline_health_current') }}
)

select
    build_id,
    live_documents,
    covered_documents
from health
where covered_documents < live_documents
