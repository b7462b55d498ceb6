{#- Staged document directory (var document_dir): every file, staged like the feed. Files of a
    converted format (and Markdown with front matter) take their body, title, pages, metadata
    and reject reason from the conversion cache (stg_docs__document_conversions). A file's
    access list is its front matter's `allowed_principals`, else that of the first rule of
    var document_dir_principals whose glob matches its path. -#}
{%- if var('document_dir') | trim -%}
    {%- set files -%}
        (
            select
                files.* replace (
                    coalesce(conversions.markdown, files.body) as body,
                    coalesce(conversions.title, files.title) as title,
                    coalesce(files._parse_error, conversions.reject_reason) as _parse_error,
                    coalesce(conversions.detail, files._raw_line) as _raw_line
                ),
                conversions.pages as _pages,
                conversions.page_kind as _page_kind,
                case
                    when conversions.metadata is not null
                        then json_merge_patch(conversions.metadata, '{"allowed_principals": null}')
                end::varchar as metadata,
                coalesce(
                    (conversions.metadata::json -> 'allowed_principals')::varchar,
                    {{ rag_store.document_dir_principals('files.doc_id') }}
                ) as allowed_principals
            from {{ source('docs', 'document_files') }} as files
            left join {{ ref('stg_docs__document_conversions') }} as conversions
                on files._content_key = conversions.content_key
        )
    {%- endset -%}
    {{ rag_store.stage_document_versions(files, 'directory', 'document_dir') }}
{%- else -%}
    -- depends_on: {{ ref('stg_docs__document_conversions') }}
    {{ rag_store.stage_document_versions(none, 'directory') }}
{%- endif -%}
