{#- One row per refused input row (feed line, directory file, relation row), with its reason. -#}
with

document_versions as (
    select * from {{ ref('int_document_versions') }}
),

rejected_versions as (
    select
        source_kind,
        doc_id,
        source_file,
        line_number,
        reject_reason,
        raw_excerpt,
        updated_at_text,
        _loaded_at
    from document_versions
    where reject_reason is not null
)

select * from rejected_versions
