{#- Staged relation source (var document_relation): every row, mapped to the document fields
    (var document_relation_columns) and staged like the feed. -#}
{%- set relation = rag_store.document_relation() -%}
{%- if relation is not none -%}
    {{ rag_store.stage_document_versions(
        rag_store.document_relation_rows(relation), 'relation', 'document_relation') }}
{%- else -%}
    {{ rag_store.stage_document_versions(none, 'relation') }}
{%- endif -%}
