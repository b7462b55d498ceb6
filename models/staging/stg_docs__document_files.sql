{#- Staged document directory (var document_dir): every file, staged like the feed. -#}
{%- if var('document_dir') | trim -%}
    {{ rag_store.stage_document_versions(
        source('docs', 'document_files'), 'directory', 'document_dir') }}
{%- else -%}
    {{ rag_store.stage_document_versions(none, 'directory') }}
{%- endif -%}
