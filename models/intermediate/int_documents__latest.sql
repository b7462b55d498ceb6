{#- The latest accepted version of every document, tombstones included; the store's input. -#}
{{
    config(
        materialized='incremental',
        unique_key='doc_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{#- Reads as: previous state -> checkpoint -> new versions -> removed documents -> current versions
    -> rank -> guard. {{ this }} is read only as previous_versions: on a full build that is
    zero rows of the same columns, so every later step is the same SQL in both kinds of build. -#}
{%- set lookback_hours = var('loaded_at_lookback_hours') | int -%}

with

document_versions as (
    select * from {{ ref('int_document_versions') }}
),

{% if is_incremental() %}
    previous_versions as (
        select *
        {%- if not rag_store.has_column(this, 'changed_at') %},
            null::timestamp as changed_at
        {%- endif %}
        from {{ this }}
    ),
{% else %}
    previous_versions as (
        select
            * exclude (reject_reason, raw_excerpt, updated_at_text),
            null::timestamp as loaded_at_watermark,
            null::timestamp as changed_at
        from document_versions
        where false
    ),
{% endif %}

checkpoint as (
    {#- Incremental checkpoint: the highest feed _loaded_at seen so far, minus a lookback
        window. Never updated_at: a new document with an old updated_at must still be picked
        up. A document directory and a relation source are read whole on every build. -#}
    select
        coalesce(max(loaded_at_watermark), '-infinity'::timestamp)
        - to_hours({{ lookback_hours }}) as loaded_after
    from previous_versions
),

new_versions as (
    select
        document_versions.* exclude (
            document_versions.reject_reason,
            document_versions.raw_excerpt,
            document_versions.updated_at_text
        )
    from document_versions
    cross join checkpoint
    where
        document_versions.reject_reason is null
        and (
            document_versions.source_kind in ('directory', 'relation')
            or document_versions._loaded_at > checkpoint.loaded_after
        )
),

removed_documents as (
    {{ rag_store.removed_snapshot_documents('previous_versions', 'document_versions') }}
),

current_versions as (
    {#- The version each touched document has now competes with its newer arrivals. -#}
    select * exclude (loaded_at_watermark, changed_at)
    from previous_versions
    where
        doc_id in (select new_versions.doc_id from new_versions)
        or doc_id in (select removed_documents.doc_id from removed_documents)
),

candidate_versions as (
    select * from new_versions
    union all by name
    select * from removed_documents
    union all by name
    select * from current_versions
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
                line_number desc nulls last
        ) as version_rank
    from candidate_versions
),

watermark as (
    select max(new_versions._loaded_at) as loaded_at_watermark
    from new_versions
    where new_versions.source_kind = 'feed'
),

latest_versions as (
    select
        ranked_versions.* exclude (ranked_versions.version_rank),
        watermark.loaded_at_watermark
    from ranked_versions
    cross join watermark
    where ranked_versions.version_rank = 1
),

guarded_versions as (
    {{ rag_store.mass_delete_guard('latest_versions', 'previous_versions') }}
),

-- changed_at: when what the store shows of the document last changed. A document read again
-- unchanged (a directory or relation source is read whole on every build) keeps its stamp,
-- so retrieval_store looks only at documents stamped after its last write.
stamped_versions as (
    select
        guarded_versions.*,
        case
            when
                previous_versions.doc_id is not null
                and not (
                    guarded_versions.is_deleted is distinct from previous_versions.is_deleted
                    or guarded_versions.content_hash is distinct from previous_versions.content_hash
                    or guarded_versions.title is distinct from previous_versions.title
                    or guarded_versions.source_uri is distinct from previous_versions.source_uri
                    or guarded_versions.updated_at is distinct from previous_versions.updated_at
                    or guarded_versions.metadata is distinct from previous_versions.metadata
                    or guarded_versions.allowed_principals
                    is distinct from previous_versions.allowed_principals
                )
                then previous_versions.changed_at
            else (now() at time zone 'UTC')
        end as changed_at
    from guarded_versions
    left join previous_versions on guarded_versions.doc_id = previous_versions.doc_id
)

select * from stamped_versions
