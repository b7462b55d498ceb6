{#- The conversion cache: one row per converted file content (content key = SHA-256 of the
    bytes and the extension) of document_dir and of the relation source's files, the file as
    Markdown with its pages or slides, metadata, or the
    reason it cannot be read. Incremental: a build converts only content it has not seen, so
    a no-op build over any number of PDFs converts nothing, and an edited file is converted
    once. A new converter version converts everything again. -#}
{{
    config(
        materialized='incremental',
        unique_key='content_key',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{%- set directory = var('document_dir') | trim -%}
{%- set relation = rag_store.document_relation() -%}
{%- set relation_columns = rag_store.document_relation_columns() if relation is not none else {} %}
-- depends_on: {{ ref('stg_docs__relation_files') }}

{#- Every file to convert: content key, a name (for the format) and its bytes, or the path
    to read them from (read only when the content is not converted yet). #}
with

files as (
    select
        null::varchar as content_key,
        null::varchar as source_file,
        null::blob as file_bytes,
        null::varchar as file_path
    where false
    {%- if directory %}
        union all
        select
            directory_files.content_key,
            directory_files.source_file,
            directory_files.file_bytes,
            null as file_path
        from read_document_dir_content({{ rag_store.sql_string(directory) }}) as directory_files
    {%- endif %}
    {%- if relation is not none and relation_columns['file_path'] %}
        union all
        select
            relation_files.content_key,
            relation_files.file_path as source_file,
            null as file_bytes,
            relation_files.file_path
        from {{ ref('stg_docs__relation_files') }} as relation_files
        where relation_files.content_key is not null
    {%- endif %}
    {%- if relation is not none and relation_columns['file_bytes'] %}
        union all
        select
            file_content_key(relation_rows._file_bytes, relation_rows._file_name) as content_key,
            relation_rows._file_name as source_file,
            relation_rows._file_bytes as file_bytes,
            null as file_path
        from {{ rag_store.document_relation_rows(relation) }} as relation_rows
        where relation_rows._file_bytes is not null
    {%- endif %}
),

pending as (
    select
        files.content_key,
        any_value(files.source_file) as source_file,
        any_value(files.file_bytes) as file_bytes,
        any_value(files.file_path) as file_path
    from files
    {% if is_incremental() %}
        where files.content_key not in (
            select converted.content_key from {{ this }} as converted
            where converted.converter_version = rag_converter_version()
        )
    {% endif %}
    group by files.content_key
),

converted as (
    select
        pending.content_key,
        pending.source_file,
        rag_convert(
            -- the path is read only where there are no bytes
            coalesce(pending.file_bytes, rag_read_file(pending.file_path).content),
            pending.source_file
        ) as converted_file
    from pending
)

select
    converted.content_key,
    rag_converter_version() as converter_version,
    converted.converted_file.markdown,
    converted.converted_file.title,
    converted.converted_file.pages,
    converted.converted_file.page_kind,
    converted.converted_file.metadata,
    converted.converted_file.reject_reason,
    converted.converted_file.detail,
    converted.source_file as first_source_file,
    (now() at time zone 'UTC') as converted_at
from converted
