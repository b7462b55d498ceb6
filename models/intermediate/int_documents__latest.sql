{{
    config(
        materialized='incremental',
        unique_key='doc_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

{#- Incremental checkpoint: the highest feed _loaded_at seen so far, minus a lookback window.
    Never updated_at: a new document with an old updated_at must still be picked up. A
    document directory is a full snapshot and is compared in full on every build. -#}
{%- set lookback_hours = var('loaded_at_lookback_hours') | int -%}

with

feed_changes as (
    select * from {{ ref('stg_docs__document_changes') }}
),

file_versions as (
    select * from {{ ref('stg_docs__document_files') }}
),

all_versions as (
    select * from feed_changes
    union all by name
    select * from file_versions
),

{% if is_incremental() %}
    checkpoint as (
        select
            coalesce(max(loaded_at_watermark), '-infinity'::timestamp)
            - to_hours({{ lookback_hours }}) as loaded_after
        from {{ this }}
    ),
{% else %}
    checkpoint as (
        select '-infinity'::timestamp as loaded_after
    ),
{% endif %}

new_versions as (
    select all_versions.*
    from all_versions
    cross join checkpoint
    where
        all_versions.reject_reason is null
        and (
            all_versions.source_kind = 'directory'
            or all_versions._loaded_at > checkpoint.loaded_after
        )
),

{% if is_incremental() and var('document_dir') | trim %}
    {#- A directory is a full snapshot: a file that was there and is gone is a delete. -#}
    removed_files as (
        select
            previous.doc_id,
            previous.title,
            '' as body,
            previous.source_uri,
            (now() at time zone 'UTC') as updated_at,
            true as is_deleted,
            sha256(previous.title || chr(31)) as content_hash,
            (now() at time zone 'UTC') as _loaded_at,
            'directory' as source_kind,
            previous.source_file,
            previous.line_number
        from {{ this }} as previous
        where
            previous.source_kind = 'directory'
            and not previous.is_deleted
            and previous.doc_id not in (
                select file_versions.doc_id from file_versions
                where file_versions.doc_id is not null
            )
    ),
{% else %}
    removed_files as (
        select
            null::varchar as doc_id,
            null::varchar as title,
            null::varchar as body,
            null::varchar as source_uri,
            null::timestamp as updated_at,
            null::boolean as is_deleted,
            null::varchar as content_hash,
            null::timestamp as _loaded_at,
            null::varchar as source_kind,
            null::varchar as source_file,
            null::bigint as line_number
        where false
    ),
{% endif %}

{% if is_incremental() %}
    current_versions as (
        {#- The version each touched document has now competes with its newer arrivals. -#}
        select * exclude (loaded_at_watermark)
        from {{ this }}
        where
            doc_id in (select new_versions.doc_id from new_versions)
            or doc_id in (select removed_files.doc_id from removed_files)
    ),
{% else %}
    current_versions as (
        select * from removed_files
    ),
{% endif %}

candidate_versions as (
    select
        doc_id,
        title,
        body,
        source_uri,
        updated_at,
        is_deleted,
        content_hash,
        _loaded_at,
        source_kind,
        source_file,
        line_number
    from new_versions
    union all by name
    select * from removed_files
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
        ranked_versions.doc_id,
        ranked_versions.title,
        ranked_versions.body,
        ranked_versions.source_uri,
        ranked_versions.updated_at,
        ranked_versions.is_deleted,
        ranked_versions.content_hash,
        ranked_versions._loaded_at,
        ranked_versions.source_kind,
        ranked_versions.source_file,
        ranked_versions.line_number,
        watermark.loaded_at_watermark
    from ranked_versions
    cross join watermark
    where ranked_versions.version_rank = 1
),

{% if is_incremental() %}
    {#- Mass-delete guards, counted over documents live before this build. A deletion is
        implied when a directory file is gone (a source that shrinks or vanishes: the usual
        sign of a broken mount or an empty export), explicit when the feed delivers a
        tombstone (the producer says so per document, so its threshold is looser). Either
        guard refuses the build before anything is written when it would delete more than
        its share of the live documents, and more than one. -#}
    delete_guard as (
        select
            (
                select count(*) from {{ this }} as live
                where not live.is_deleted
            ) as live_before,
            count(*) filter (
                where latest_versions.source_kind = 'directory'
            ) as implied_deletes,
            count(*) filter (
                where latest_versions.source_kind != 'directory'
            ) as tombstones
        from latest_versions
        where
            latest_versions.is_deleted
            and latest_versions.doc_id in (
                select previous.doc_id from {{ this }} as previous
                where not previous.is_deleted
            )
    ),
{% else %}
    delete_guard as (
        select
            0 as live_before,
            0 as implied_deletes,
            0 as tombstones
    ),
{% endif %}

guarded_versions as (
    select latest_versions.*
    from latest_versions
    cross join delete_guard
    where
        case
            when
                delete_guard.implied_deletes > 1
                and delete_guard.implied_deletes
                > {{ var('max_delete_fraction') | float }} * delete_guard.live_before
                then error(
                    'mass-delete guard: this build would delete '
                    || delete_guard.implied_deletes || ' of ' || delete_guard.live_before
                    || ' live documents whose files are gone from document_dir, more than '
                    || 'max_delete_fraction = {{ var("max_delete_fraction") }}. Nothing '
                    || 'was deleted. Check that the directory is complete; if the delete '
                    || 'is intended, rerun with --vars ''{max_delete_fraction: 1}''.'
                )
            when
                delete_guard.tombstones > 1
                and delete_guard.tombstones
                > {{ var('max_tombstone_fraction') | float }} * delete_guard.live_before
                then error(
                    'mass-delete guard: this build would tombstone '
                    || delete_guard.tombstones || ' of ' || delete_guard.live_before
                    || ' live documents, more than max_tombstone_fraction = '
                    || '{{ var("max_tombstone_fraction") }}. Nothing was deleted. If the '
                    || 'feed means it, rerun with --vars ''{max_tombstone_fraction: 1}''.'
                )
            else true
        end
)

select * from guarded_versions
