{#- Staged change feed (var document_feed): every line, cleaned, hashed, with any reject_reason. -#}
{%- if var('document_feed') | trim -%}
    {{ rag_store.stage_document_versions(
        source('docs', 'document_changes'), 'feed', 'document_feed') }}
{%- else -%}
    {{ rag_store.stage_document_versions(none, 'feed') }}
{%- endif -%}
