{#- Staged change feed (var document_feed): every line, cleaned, hashed, with any reject_reason.
    Incremental by file (macros/feed_files.sql): a build parses only new and rewritten feed
    files; a rewritten file's rows replace its old ones (unique_key source_file), and the
    pre-hook forgets the rows of files that are gone. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='source_file',
        on_schema_change='append_new_columns',
        pre_hook="{{ rag_store.forget_stale_feed_files() }}",
    )
}}
{%- set feed = source('docs', 'document_changes') -%}
{%- if not var('document_feed') | trim -%}
    {{ rag_store.stage_document_versions(none, 'feed') }}
{%- elif 'read_document_feed(' in feed | string -%}
    {#- the feed files themselves: read file by file -#}
    {{ rag_store.stage_document_versions(
        rag_store.unread_feed_lines(), 'feed', 'document_feed',
        earlier_deliveries=this if is_incremental() and rag_store.stores_feed_fingerprints(this) else none) }}
{%- else -%}
    {#- the source stands for given rows (a unit test's fixture): staged whole -#}
    {{ rag_store.stage_document_versions(feed, 'feed', 'document_feed') }}
{%- endif -%}
