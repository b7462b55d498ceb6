{#- The local files the relation source's rows point at (document_relation_columns.file_path):
    one row per path with the content key of its bytes (the conversion cache's key), or why
    it could not be read. A table, read again on every build: a file rewritten under the
    same path gets a new key and is converted once. No rows when no file_path is mapped. -#}
{{ config(materialized='table') }}

{%- set relation = rag_store.document_relation() -%}
{%- set columns = rag_store.document_relation_columns() if relation is not none else {} %}

{% if relation is not none and columns['file_path'] -%}
    with

    paths as (
        select distinct relation_rows._file_path as file_path
        from {{ rag_store.document_relation_rows(relation) }} as relation_rows
        where relation_rows._file_path is not null
    ),

    read_files as (
        select
            file_path,
            rag_read_file(file_path) as read_file
        from paths
    )

    select
        file_path,
        read_file.error as read_error,
        case
            when read_file.error is null then file_content_key(read_file.content, file_path)
        end as content_key
    from read_files
{%- else -%}
    select
        null::varchar as file_path,
        null::varchar as read_error,
        null::varchar as content_key
    where false
{%- endif %}
