{#- One row per .md/.markdown/.txt file under var document_dir (empty: no files source). -#}
{%- if var('document_dir') | trim -%}
    {{ rag_store.stage_document_versions(source('docs', 'document_files'), 'directory') }}
{%- else -%}
    {{ rag_store.stage_document_versions(none, 'directory') }}
{%- endif -%}
