-- Warns about chunks of the active model that failed to embed in 3 or more builds and have
-- no vector yet: retries are not helping, a person should look at the text or the model.
{{ config(severity='warn', tags=['alert'], enabled=rag_store.alert_tests_enabled()) }}

with

attempts as (
    select
        chunk_hash,
        count(*) filter (where embedding is null) as failed_attempts,
        count(*) filter (where embedding is not null) as vectors,
        max(error) as last_error
    from {{ ref('chunk_embeddings') }}
    where model_id = (select active.model_id from {{ ref('int_active_embedder') }} as active)
    group by chunk_hash
)

select * from attempts
where failed_attempts >= 3 and vectors = 0
