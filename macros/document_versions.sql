{#- Steps of int_documents__latest that compare new document versions with its previous state. -#}

{#- The directory snapshot diff. A document directory is a full snapshot, so a live document of
    `previous` that came from the directory and whose file is no longer among the directory
    versions in `document_versions` (rejected ones included: the file is still there) becomes a
    tombstone. Renders a select in the columns of a document version (match them by name).
    With no var document_dir there is no snapshot to compare, and no row.

    previous:          relation or CTE name: int_documents__latest as the last build left it.
    document_versions: relation or CTE name shaped like int_document_versions. -#}
{% macro removed_directory_files(previous, document_versions) -%}
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
from {{ previous }} as previous
where
    {{ 'true' if var('document_dir') | trim else 'false' }}
    and previous.source_kind = 'directory'
    and not previous.is_deleted
    and previous.doc_id not in (
        select delivered.doc_id from {{ document_versions }} as delivered
        where delivered.source_kind = 'directory' and delivered.doc_id is not null
    )
{%- endmacro %}

{#- The mass-delete guards, counted over documents live in `previous`. A deletion is implied
    when a directory file is gone (a source that shrinks or vanishes: the usual sign of a
    broken mount or an empty export), explicit when the feed delivers a tombstone (the
    producer says so per document, so its threshold, var max_tombstone_fraction, is looser
    than var max_delete_fraction). Either guard refuses the build before anything is written
    when it would delete more than its share of the live documents, and more than one.
    Renders a select of every row of `latest_versions`, unchanged, or fails the query.

    latest_versions: relation or CTE name: the rows the build is about to write.
    previous:        relation or CTE name: int_documents__latest as the last build left it. -#}
{% macro mass_delete_guard(latest_versions, previous) -%}
select latest.*
from {{ latest_versions }} as latest
cross join (
    select
        (
            select count(*) from {{ previous }} as live
            where not live.is_deleted
        ) as live_before,
        count(*) filter (
            where deleting.source_kind = 'directory'
        ) as implied_deletes,
        count(*) filter (
            where deleting.source_kind != 'directory'
        ) as tombstones
    from {{ latest_versions }} as deleting
    where
        deleting.is_deleted
        and deleting.doc_id in (
            select was_live.doc_id from {{ previous }} as was_live
            where not was_live.is_deleted
        )
) as delete_guard
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
{%- endmacro %}
