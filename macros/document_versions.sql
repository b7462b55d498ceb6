{#- Steps of int_documents__latest that compare new document versions with its previous state. -#}

{#- The snapshot diff. A document directory, and a relation source with snapshot deletes, is
    read whole on every build, so a live document of `previous` that came from such a source
    and is no longer among that source's versions in `document_versions` (rejected ones
    included: the file or row is still there) becomes a tombstone. Renders a select in the
    columns of a document version (match them by name); no row when no source is a snapshot.

    previous:          relation or CTE name: int_documents__latest as the last build left it.
    document_versions: relation or CTE name shaped like int_document_versions. -#}
{% macro removed_snapshot_documents(previous, document_versions) -%}
{%- set kinds = rag_store.snapshot_source_kinds() -%}
select
    previous.doc_id,
    previous.title,
    '' as body,
    previous.source_uri,
    (now() at time zone 'UTC') as updated_at,
    true as is_deleted,
    sha256(previous.title || chr(31)) as content_hash,
    (now() at time zone 'UTC') as _loaded_at,
    previous.source_kind,
    previous.source_file,
    previous.line_number
from {{ previous }} as previous
where
    {% if kinds -%}
        previous.source_kind in ({{ "'" ~ kinds | join("', '") ~ "'" }})
    {%- else -%}
        false
    {%- endif %}
    and not previous.is_deleted
    and not exists (
        select 1 from {{ document_versions }} as delivered
        where
            delivered.source_kind = previous.source_kind
            and delivered.doc_id = previous.doc_id
    )
{%- endmacro %}

{#- The mass-delete guards, judged per source: the deletions a build would make from one
    source (feed, directory, relation) against the documents of that source live in
    `previous`. A deletion is implied when a document is no longer in a snapshot source (a
    directory file gone, a row gone from a relation read with snapshot deletes: the usual sign
    of a broken mount or an empty export), explicit when a tombstone says so (the producer
    states it per document, so its threshold, var max_tombstone_fraction, is looser than var
    max_delete_fraction). Either guard refuses the build before anything is written when it
    would delete more than its share of a source's live documents, and more than one.
    Renders a select of every row of `latest_versions`, unchanged, or fails the query.

    latest_versions: relation or CTE name: the rows the build is about to write.
    previous:        relation or CTE name: int_documents__latest as the last build left it. -#}
{% macro mass_delete_guard(latest_versions, previous) -%}
{%- set snapshot_kinds = rag_store.snapshot_source_kinds() -%}
{%- set source_vars = {
    'feed': 'document_feed', 'directory': 'document_dir', 'relation': 'document_relation'} -%}
select latest.*
from {{ latest_versions }} as latest
cross join (
    select string_agg(
        case
            when deletes.is_implied
                then 'mass-delete guard: this build would delete ' || deletes.deleted
                || ' of ' || deletes.live_before || ' live documents of '
                || deletes.source_var || ' that it no longer delivers, more than '
                || 'max_delete_fraction = {{ var("max_delete_fraction") }}. Nothing was '
                || 'deleted. Check that the source is complete; if the delete is intended, '
                || 'rerun with --vars ''{max_delete_fraction: 1}''.'
            else
                'mass-delete guard: this build would tombstone ' || deletes.deleted
                || ' of ' || deletes.live_before || ' live documents of '
                || deletes.source_var || ', more than max_tombstone_fraction = '
                || '{{ var("max_tombstone_fraction") }}. Nothing was deleted. If the '
                || 'source means it, rerun with --vars ''{max_tombstone_fraction: 1}''.'
        end,
        ' '
    ) as refusal
    from (
        select
            deleting.source_kind,
            case deleting.source_kind
                {%- for kind, name in source_vars.items() %}
                    when '{{ kind }}' then '{{ name }}'
                {%- endfor %}
            end as source_var,
            deleting.source_kind in ({{ "'" ~ (snapshot_kinds or ['-']) | join("', '") ~ "'" }})
            and deleting.source_kind != 'feed' as is_implied,
            count(*) as deleted,
            (
                select count(*) from {{ previous }} as live
                where not live.is_deleted and live.source_kind = deleting.source_kind
            ) as live_before
        from {{ latest_versions }} as deleting
        where
            deleting.is_deleted
            and deleting.doc_id in (
                select was_live.doc_id from {{ previous }} as was_live
                where not was_live.is_deleted
            )
        group by deleting.source_kind
    ) as deletes
    where
        deletes.deleted > 1
        and deletes.deleted > deletes.live_before * case
            when deletes.is_implied then {{ var('max_delete_fraction') | float }}
            else {{ var('max_tombstone_fraction') | float }}
        end
) as delete_guard
where
    case
        when delete_guard.refusal is not null then error(delete_guard.refusal)
        else true
    end
{%- endmacro %}
