-- Fails when a current chunk of a live document has no vector of the active model in
-- retrieval_store (an embedding failed, or the store is behind its chunks). Reads
-- pipeline_health_current, which has no children, so a failure here skips nothing.
with

health as (
    select * from {{ ref('pipeline_health_current') }}
)

select
    build_id,
    missing_chunks
from health
where missing_chunks > 0
