{#- The conversion cache: one row per converted file content (content key = SHA-256 of the
    bytes and the extension), the file as Markdown with its pages or slides, metadata, or the
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

{%- set directory = var('document_dir') | trim %}

with

{% if directory %}
    files as (
        select * from read_document_dir_content({{ rag_store.sql_string(directory) }})
    ),
{% else %}
    files as (
        select
            null::varchar as source_file,
            null::blob as file_bytes,
            null::varchar as content_key
        where false
    ),
{% endif %}

pending as (
    select
        files.content_key,
        any_value(files.source_file) as source_file,
        any_value(files.file_bytes) as file_bytes
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
        rag_convert(pending.file_bytes, pending.source_file) as converted_file
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
