{#- Staged relation source (var document_relation): every row, mapped to the document fields
    (var document_relation_columns) and staged like the feed. A row that carries a file
    (file_path or file_bytes) and no body takes its body, title, pages, metadata (under the
    row's own) and reject reason from the conversion cache. -#}
{%- set relation = rag_store.document_relation() -%}
-- depends_on: {{ ref('stg_docs__relation_files') }}
-- depends_on: {{ ref('stg_docs__document_conversions') }}
{% if relation is not none -%}
    {%- set rows -%}
        (
            select
                relation_rows.* replace (
                    coalesce(relation_rows.body, conversions.markdown) as body,
                    coalesce(nullif(trim(relation_rows.title), ''), conversions.title) as title,
                    coalesce(
                        relation_rows._parse_error,
                        case
                            when relation_rows.body is null
                                then coalesce(files.read_error, conversions.reject_reason)
                        end
                    ) as _parse_error,
                    case
                        when relation_rows.body is null and conversions.detail is not null
                            then conversions.detail
                        when relation_rows.body is null and files.read_error is not null
                            then files.read_error || ': ' || relation_rows._file_path
                        else relation_rows._raw_line
                    end as _raw_line,
                    case
                        when relation_rows.body is not null or conversions.metadata is null
                            then relation_rows.metadata
                        when relation_rows.metadata is null then conversions.metadata
                        when json_type(try(json(relation_rows.metadata))) = 'OBJECT'
                            then json_merge_patch(conversions.metadata, relation_rows.metadata)::varchar
                        else relation_rows.metadata
                    end as metadata
                ),
                case when relation_rows.body is null then conversions.pages end as _pages,
                case when relation_rows.body is null then conversions.page_kind end as _page_kind
            from {{ rag_store.document_relation_rows(relation) }} as relation_rows
            left join {{ ref('stg_docs__relation_files') }} as files
                on relation_rows._file_path = files.file_path
            left join {{ ref('stg_docs__document_conversions') }} as conversions
                on coalesce(
                    files.content_key,
                    file_content_key(relation_rows._file_bytes, relation_rows._file_name)
                ) = conversions.content_key
        )
    {%- endset -%}
    {{ rag_store.stage_document_versions(rows, 'relation', 'document_relation') }}
{%- else %}
    {{ rag_store.stage_document_versions(none, 'relation') }}
{%- endif -%}
