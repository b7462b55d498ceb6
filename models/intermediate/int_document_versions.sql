{#- Every document version the sources delivered (feed, directory, relation): the columns
    int_documents__latest keeps, and for rejected versions the excerpt documents_rejected shows. -#}
{#- A view: the staging views it unions call no Python UDF. Rejected versions stay, with their
    reject_reason: a directory file that is there but unusable is still not a deleted one. -#}
{{ config(materialized='view') }}

with

all_versions as (
    select * from {{ ref('stg_docs__document_changes') }}
    union all by name
    select * from {{ ref('stg_docs__document_files') }}
    union all by name
    select * from {{ ref('stg_docs__document_rows') }}
)

select
    doc_id,
    title,
    body,
    source_uri,
    updated_at,
    is_deleted,
    content_hash,
    _loaded_at,
    source_kind,
    source_file,
    line_number,
    reject_reason,
    pages,
    page_kind,
    metadata,
    allowed_principals,
    raw_excerpt,
    updated_at_text
from all_versions
