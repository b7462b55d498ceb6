{#- Staging of one document source: the rules every document version passes through. -#}

{#- The staging logic shared by every document source: trim, Unicode NFC, LF line endings,
    UTC timestamps, a content hash, and a reject_reason instead of a dropped row.

    source_relation: a relation with the columns of the read_document_feed table macro,
                     or none for "this source is not configured": then the feed reader over
                     no files stands in (zero rows, the same columns, stated only there).
    source_kind:     'feed' or 'directory'; kept on every row. -#}
{% macro stage_document_versions(source_relation, source_kind) -%}
{%- if source_kind not in ['feed', 'directory'] -%}
    {{ exceptions.raise_compiler_error("stage_document_versions: unknown source_kind " ~ source_kind) }}
{%- endif -%}
with

source as (
    {% if source_relation is none %}
        select * from read_document_feed([]::varchar[])
    {% else %}
        select * from {{ source_relation }}
    {% endif %}
),

cleaned as (
    select
        '{{ source_kind }}' as source_kind,
        _source_file as source_file,
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
        _loaded_at
    from source
),

hashed as (
    select
        *,
        sha256(title || chr(31) || body) as content_hash
    from cleaned
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
            when not is_deleted and body = '' then 'empty_body'
            when octet_length(encode(body)) > {{ var('max_document_bytes') | int }}
                then 'body_too_large'
        end as reject_reason
    from hashed
),

conflicts as (
    {#- Same doc_id and updated_at but different content: the first delivery stands, every
        later conflicting row is refused (deterministic in incremental and full builds). -#}
    select
        *,
        case
            when reject_reason is null
                and content_hash != first_value(content_hash) over (
                    partition by doc_id, updated_at, reject_reason is null
                    order by _loaded_at, source_file, line_number
                )
                then 'conflicting_duplicate'
            else reject_reason
        end as final_reject_reason
    from flagged
)

select * exclude (reject_reason, final_reject_reason), final_reject_reason as reject_reason
from conflicts
{%- endmacro %}
