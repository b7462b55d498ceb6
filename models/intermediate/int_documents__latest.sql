with

document_changes as (
    select * from {{ ref('stg_docs__document_changes') }}
),

accepted_changes as (
    select * from document_changes
    where reject_reason is null
),

ranked_versions as (
    select
        *,
        row_number() over (
            partition by doc_id
            order by
                updated_at desc,
                _loaded_at desc,
                source_file desc,
                line_number desc
        ) as version_rank,
        count(*) over (partition by doc_id) as versions_seen
    from accepted_changes
),

latest_versions as (
    select
        doc_id,
        title,
        body,
        source_uri,
        updated_at,
        is_deleted,
        content_hash,
        _loaded_at,
        versions_seen,
        source_file,
        line_number
    from ranked_versions
    where version_rank = 1
)

select * from latest_versions
