{{
    config(
        materialized='incremental',
        unique_key='doc_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "delete from {{ this }} where doc_id not in (
                select doc_id from {{ ref('int_documents__latest') }} where not is_deleted
            )"
        ],
    )
}}

{%- set model_ref = var('embedding_model') | string -%}
{%- set chunker_args = "'" ~ model_ref | replace("'", "''") ~ "', "
    ~ (var('max_chunk_tokens') | int) ~ ", " ~ (var('chunk_overlap_tokens') | int) -%}

with

latest_documents as (
    select * from {{ ref('int_documents__latest') }}
),

chunker as (
    select rag_chunker_fingerprint({{ chunker_args }}) as chunker_fingerprint
),

documents_to_chunk as (
    select
        latest_documents.doc_id,
        latest_documents.title,
        latest_documents.body,
        latest_documents.content_hash,
        chunker.chunker_fingerprint
    from latest_documents
    cross join chunker
    where
        not latest_documents.is_deleted
        {% if is_incremental() %}
            and not exists (
                select 1
                from {{ this }} as existing
                where
                    existing.doc_id = latest_documents.doc_id
                    and existing.content_hash = latest_documents.content_hash
                    and existing.chunker_fingerprint = chunker.chunker_fingerprint
            )
        {% endif %}
),

exploded as (
    select
        doc_id,
        content_hash,
        chunker_fingerprint,
        unnest(rag_chunk(body, title, {{ chunker_args }})) as chunk
    from documents_to_chunk
),

chunks as (
    select
        doc_id || ':' || chunk.chunk_index as chunk_id,
        doc_id,
        chunk.chunk_index as chunk_index,
        chunk.heading_path as heading_path,
        chunk.chunk_text as chunk_text,
        chunk.embedding_text as embedding_text,
        chunk.token_count as token_count,
        chunk.char_start as char_start,
        chunk.char_end as char_end,
        sha256(chunker_fingerprint || chr(31) || chunk.embedding_text) as chunk_hash,
        content_hash,
        chunker_fingerprint,
        (now() at time zone 'UTC') as chunked_at
    from exploded
)

select * from chunks
