{#- One row per build: coverage, lag, rejects, orphans; append-only health history. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='append_new_columns',
    )
}}

{#- One row per build: is the store complete, current and clean? Append-only history;
    pipeline_health_current shows the latest row. It has no children, so it is written
    even when a test upstream fails — exactly when it is most needed. -#}

with

latest_documents as (
    select * from {{ ref('int_documents__latest') }}
),

document_chunks as (
    select * from {{ ref('int_document_chunks') }}
),

-- not materialized: each use reads only the columns it needs (a materialized select *
-- would copy every vector of the store on every build)
stored_chunks as not materialized (
    select * from {{ ref('retrieval_store') }}
),

chunk_embeddings as not materialized (
    select * from {{ ref('chunk_embeddings') }}
),

rejected_rows as (
    select * from {{ ref('documents_rejected') }}
),

active_embedder as (
    select * from {{ ref('int_active_embedder') }}
),

live_documents as (
    select
        doc_id,
        content_hash,
        _loaded_at
    from latest_documents
    where not is_deleted
),

current_chunks as (
    select
        document_chunks.doc_id,
        document_chunks.chunk_id,
        document_chunks.chunked_at
    from document_chunks
    inner join live_documents
        on
            document_chunks.doc_id = live_documents.doc_id
            and document_chunks.content_hash = live_documents.content_hash
),

chunk_presence as (
    select
        current_chunks.doc_id,
        current_chunks.chunk_id,
        stored_chunks.chunk_id is not null as is_stored,
        -- written into retrieval_store by its build (published seconds later)
        greatest(
            current_chunks.chunked_at, stored_chunks.embedded_at, stored_chunks.stored_at
        ) as searchable_at
    from current_chunks
    left join stored_chunks on current_chunks.chunk_id = stored_chunks.chunk_id
),

document_status as (
    select
        live_documents.doc_id,
        live_documents._loaded_at,
        count(chunk_presence.chunk_id) as current_chunks,
        count(chunk_presence.chunk_id) filter (where not chunk_presence.is_stored)
            as missing_chunks,
        max(chunk_presence.searchable_at) as searchable_at
    from live_documents
    left join chunk_presence on live_documents.doc_id = chunk_presence.doc_id
    group by live_documents.doc_id, live_documents._loaded_at
),

document_lag as (
    select
        *,
        current_chunks > 0 and missing_chunks = 0 as is_covered,
        case
            when current_chunks > 0 and missing_chunks = 0
                then greatest(epoch(searchable_at - _loaded_at), 0)
            else epoch((now() at time zone 'UTC') - _loaded_at)
        end as lag_seconds
    from document_status
),

deleted_documents as (
    select count(*) as deleted_documents
    from latest_documents
    where latest_documents.is_deleted
),

orphan_chunks as (
    select count(*) as orphan_chunks
    from document_chunks
    where document_chunks.doc_id not in (select live_documents.doc_id from live_documents)
),

failed_chunks as (
    select count(distinct failures.chunk_hash) as failed_chunks
    from chunk_embeddings as failures
    inner join active_embedder on failures.model_id = active_embedder.model_id
    where
        failures.error is not null
        and not exists (
            select 1 from chunk_embeddings as vectors
            where
                vectors.chunk_hash = failures.chunk_hash
                and vectors.model_id = failures.model_id
                and vectors.error is null
        )
),

document_summary as (
    select
        count(*) as live_documents,
        count(*) filter (where is_covered) as covered_documents,
        coalesce(sum(missing_chunks), 0)::bigint as missing_chunks,
        coalesce(count(*) filter (where is_covered) / nullif(count(*), 0), 1.0) as coverage,
        coalesce(max(lag_seconds), 0) as max_lag_seconds,
        coalesce(quantile_cont(lag_seconds, 0.95), 0) as p95_lag_seconds,
        min(_loaded_at) filter (where not is_covered) as oldest_pending_loaded_at
    from document_lag
),

health as (
    select
        '{{ invocation_id }}' as build_id,
        (now() at time zone 'UTC') as measured_at,
        active_embedder.model_id,
        document_summary.live_documents,
        deleted_documents.deleted_documents,
        (select count(*) from stored_chunks) as stored_chunks,
        document_summary.covered_documents,
        document_summary.missing_chunks,
        document_summary.coverage,
        document_summary.max_lag_seconds,
        document_summary.p95_lag_seconds,
        document_summary.oldest_pending_loaded_at,
        (select count(*) from rejected_rows) as rejected_rows,
        orphan_chunks.orphan_chunks,
        failed_chunks.failed_chunks
    from document_summary
    cross join active_embedder
    cross join deleted_documents
    cross join orphan_chunks
    cross join failed_chunks
)

select * from health
