{#- One row per line of the JSON-lines change feed (var document_feed). -#}
{%- if var('document_feed') | trim -%}
    {{ rag_store.stage_document_versions(source('docs', 'document_changes'), 'feed') }}
{%- else -%}
    {{ rag_store.stage_document_versions(none, 'feed') }}
{%- endif -%}
