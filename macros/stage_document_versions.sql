{#- Staging of one document source: the rules every document version passes through. -#}

{#- The staging logic shared by every document source: trim, Unicode NFC, LF line endings,
    UTC timestamps, a content hash, and a reject_reason instead of a dropped row.

    source_relation: a relation with the columns of the read_document_feed table macro,
                     or none for "this source is not configured": then the feed reader over
                     no files stands in (zero rows, the same columns, stated only there).
    source_kind:     'feed', 'directory' or 'relation'; kept on every row.
    source_var:      the var that configures the source. A configured source that delivers
                     no row at all fails the build with a message naming it (a mount that
                     is gone, a glob with a typo), unless var allow_empty_sources is true.
    earlier_deliveries: for a source staged incrementally (the feed), the rows staged by
                     earlier builds: a new row that conflicts with one of them is refused
                     (they were delivered first), and they count as delivered rows. -#}
{% macro stage_document_versions(source_relation, source_kind, source_var=none, earlier_deliveries=none) -%}
{%- if source_kind not in ['feed', 'directory', 'relation'] -%}
    {{ exceptions.raise_compiler_error("stage_document_versions: unknown source_kind " ~ source_kind) }}
{%- endif -%}
{#- Not under --empty: every source reads zero rows there by design. -#}
{%- set must_deliver = source_relation is not none and source_var is not none
    and rag_store.sql_bool(var('allow_empty_sources')) != 'true'
    and not rag_store.invoked_with('empty') -%}
with

delivered as (
    {% if source_relation is none %}
        select * from read_document_feed([]::varchar[])
    {% else %}
        select * from {{ source_relation }}
    {% endif %}
),

source as (
    select * from delivered
    -- optional columns of a source: metadata, access, pages (of a converted file)
    union all by name
    select
        null::varchar as metadata,
        null::varchar as allowed_principals,
        null::integer [] as _pages,
        null::varchar as _page_kind,
        null::varchar as _source_fingerprint
    where false
    {%- if must_deliver %}
        union all by name
        -- a row only when the source delivered none, and that row is an error
        select
            error(
                'rag-store: var {{ source_var }} ('
                || {{ rag_store.sql_string(var(source_var) | string) }}
                || ') delivers nothing: no file or row matches it. Fix the var, or set var '
                || 'allow_empty_sources: true if an empty source is intended.'
            )::varchar as _source_file
        where
            (select count(*) from delivered) = 0
            {%- if earlier_deliveries is not none %}
                and not exists (select 1 from {{ earlier_deliveries }})
            {%- endif %}
    {%- endif %}
),

cleaned as (
    select
        '{{ source_kind }}' as source_kind,
        _source_file as source_file,
        _source_fingerprint as source_fingerprint,
        _line_number as line_number,
        left(_raw_line, 500) as raw_excerpt,
        _parse_error as parse_error,
        nullif(trim(doc_id), '') as doc_id,
        nfc_normalize(trim(coalesce(title, ''))) as title,
        nfc_normalize(trim(replace(coalesce(body, ''), chr(13) || chr(10), chr(10)))) as body,
        nullif(trim(source_uri), '') as source_uri,
        try_cast(try_cast(trim(updated_at) as timestamptz) at time zone 'UTC' as timestamp)
            as updated_at,
        updated_at as updated_at_text,
        coalesce(try_cast(is_deleted as boolean), false) as is_deleted,
        is_deleted is not null and try_cast(is_deleted as boolean) is null
            as has_bad_is_deleted,
        _loaded_at,
        {#- metadata: JSON text of an object; allowed_principals: JSON text of a list of
            principal names, or of one name. Absent or JSON null: {} and public. #}
        try(json(metadata)) as metadata_json,
        metadata is not null and try(json(metadata)) is null as has_unparseable_metadata,
        try(json(allowed_principals)) as principals_json,
        allowed_principals is not null and try(json(allowed_principals)) is null
            as has_unparseable_principals,
        {#- Where each page or slide starts in the body (converted files only). #}
        _pages as pages,
        _page_kind as page_kind
    from source
),

described as (
    select
        * exclude (metadata_json, principals_json),
        case
            when coalesce(json_type(metadata_json), 'NULL') = 'NULL' then '{}'::json
            else metadata_json
        end as metadata,
        has_unparseable_metadata
        or coalesce(json_type(metadata_json), 'NULL') not in ('OBJECT', 'NULL')
            as has_bad_metadata,
        case json_type(principals_json)
            when 'VARCHAR' then [trim(principals_json ->> '$')]
            when 'ARRAY' then
                list_sort(list_distinct(list_transform(
                    from_json(principals_json, '["VARCHAR"]'), principal -> trim(principal)
                )))
        end as allowed_principals,
        has_unparseable_principals
        or coalesce(json_type(principals_json), 'NULL') not in ('VARCHAR', 'ARRAY', 'NULL')
        or (
            json_type(principals_json) = 'ARRAY'
            and not list_bool_and(list_transform(
                from_json(principals_json, '["JSON"]'), principal -> json_type(principal) = 'VARCHAR'
            ))
        ) as has_bad_principals
    from cleaned
),

hashed as (
    select
        * replace (
            case
                when has_bad_principals then null
                else allowed_principals
            end as allowed_principals
        ),
        has_bad_principals
        or list_bool_or(list_transform(allowed_principals, principal -> principal = ''))
            as has_invalid_principals,
        sha256(title || chr(31) || body) as content_hash
    from described
),

flagged as (
    select
        *,
        case
            when parse_error is not null then parse_error
            when doc_id is null then 'missing_doc_id'
            when length(doc_id) > {{ var('max_doc_id_length') | int }} then 'doc_id_too_long'
            when regexp_matches(doc_id, '[\x00-\x1f\x7f]') then 'doc_id_control_characters'
            when updated_at is null then 'unparseable_updated_at'
            when
                updated_at > (now() at time zone 'UTC')
                + to_minutes({{ var('future_updated_at_tolerance_minutes') | int }})
                then 'updated_at_in_future'
            when _loaded_at is null then 'missing_loaded_at'
            when has_bad_is_deleted then 'unparseable_is_deleted'
            when has_bad_metadata then 'invalid_metadata'
            when octet_length(encode(metadata::varchar)) > {{ var('max_metadata_bytes') | int }}
                then 'metadata_too_large'
            when coalesce(has_invalid_principals, false) then 'invalid_allowed_principals'
            -- whitespace of any kind, Unicode spaces and zero-width characters included
            when
                not is_deleted
                and regexp_full_match(body, '[\s\p{Z}\x{FEFF}\x{200B}\x{0085}\x{000B}]*')
                then 'empty_body'
            when octet_length(encode(body)) > {{ var('max_document_bytes') | int }}
                then 'body_too_large'
        end as reject_reason
    from hashed
),

{%- if earlier_deliveries is not none %}

    competing as (
        {#- Accepted rows staged by earlier builds, for the documents this build delivers:
            they were delivered first (files read again are not earlier deliveries). -#}
        select
            *,
            false as is_earlier
        from flagged
        union all by name
        select
            earlier.doc_id,
            earlier.updated_at,
            earlier.content_hash,
            earlier._loaded_at,
            earlier.source_file,
            earlier.line_number,
            true as is_earlier
        from {{ earlier_deliveries }} as earlier
        where
            earlier.reject_reason is null
            and earlier.doc_id in (select flagged.doc_id from flagged)
            and earlier.source_file not in (select flagged.source_file from flagged)
    ),
{%- else %}

    competing as (
        select
            *,
            false as is_earlier
        from flagged
    ),
{%- endif %}

conflicts as (
    {#- Same doc_id and updated_at but different content: the first delivery stands, every
        later conflicting row is refused (deterministic in incremental and full builds). -#}
    select
        *,
        case
            when reject_reason is null
                and content_hash != first_value(content_hash) over (
                    partition by doc_id, updated_at, reject_reason is null
                    order by is_earlier desc, _loaded_at, source_file, line_number
                )
                then 'conflicting_duplicate'
            else reject_reason
        end as final_reject_reason
    from competing
)

select
    * exclude (
        reject_reason, final_reject_reason, has_unparseable_metadata, has_bad_metadata,
        has_unparseable_principals, has_bad_principals, has_invalid_principals, is_earlier
    ),
    final_reject_reason as reject_reason
from conflicts
where not is_earlier
{%- endmacro %}
