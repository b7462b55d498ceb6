{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
    )
}}

{%- set run_started = run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f') -%}

with

chunk_embeddings as (
    select * from {{ ref('chunk_embeddings') }}
),

document_chunks as (
    select * from {{ ref('int_document_chunks') }}
),

active_model as (
    select rag_model_id({{ rag_store.sql_string(var('embedding_model')) }}) as model_id
),

this_run_attempts as (
    select
        count(*) filter (where chunk_embeddings.embedding is not null) as chunks_embedded,
        count(*) filter (where chunk_embeddings.embedding is null) as chunks_failed
    from chunk_embeddings
    inner join active_model on chunk_embeddings.model_id = active_model.model_id
    where chunk_embeddings.embedded_at >= '{{ run_started }}'::timestamp
),

current_chunk_hashes as (
    select count(distinct chunk_hash) as chunk_hashes
    from document_chunks
),

build_summary as (
    select
        '{{ invocation_id }}' as run_id,
        '{{ run_started }}'::timestamp as started_at,
        (now() at time zone 'UTC') as finished_at,
        active_model.model_id,
        this_run_attempts.chunks_embedded,
        current_chunk_hashes.chunk_hashes
        - this_run_attempts.chunks_embedded
        - this_run_attempts.chunks_failed as chunks_reused,
        this_run_attempts.chunks_failed
    from active_model
    cross join this_run_attempts
    cross join current_chunk_hashes
)

select * from build_summary
