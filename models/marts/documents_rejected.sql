{#- One row per refused input row (feed line or directory file), with its reason. -#}
with

document_changes as (
    select * from {{ ref('stg_docs__document_changes') }}
),

rejected_changes as (
    select
        doc_id,
        source_file,
        line_number,
        reject_reason,
        raw_excerpt,
        updated_at_text,
        _loaded_at
    from document_changes
    where reject_reason is not null
)

select * from rejected_changes
