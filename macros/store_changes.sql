{#- Which documents a change build of retrieval_store must compare. Upstream models stamp
    the rows they write (int_documents__latest.changed_at, int_document_chunks.chunked_at,
    chunk_embeddings.embedded_at), and every build writes them before the store, so the
    documents stamped at or after the store's newest stored_at are the only ones whose rows
    can differ from int_chunks__searchable. Returns their doc_ids, or none when every
    document must be compared: a first or --full-refresh build, var compare_whole_store, a
    --defer build (its upstream relations may be another target's, stamped on another
    history than this store's), a store or upstream table without the stamps, a model
    switch (every row changes), or more than max_candidates documents (a big change costs
    its embedding anyway, and the doc_ids are inlined in the SQL). -#}
{% macro store_candidate_documents(store, max_candidates=2000) -%}
{%- if not execute or not is_incremental() or rag_store.invoked_with('defer')
    or rag_store.sql_bool(var('compare_whole_store')) == 'true' -%}
    {{ return(none) }}
{%- endif -%}
{%- set latest = ref('int_documents__latest') -%}
{%- set chunks = ref('int_document_chunks') -%}
{%- set vectors = ref('chunk_embeddings') -%}
{%- set embedder = ref('int_active_embedder') -%}
{%- if not rag_store.has_column(store, 'stored_at')
    or not rag_store.has_column(latest, 'changed_at') -%}
    {{ return(none) }}
{%- endif -%}
{%- set state = run_query(
    "select max(stored_at)::varchar, count(*) filter (where model_id is distinct from"
    ~ " (select model_id from " ~ embedder ~ ")) from " ~ store).rows[0] -%}
{%- if state[0] is none or state[1] > 0 -%}
    {{ return(none) }}
{%- endif -%}
{%- set since = rag_store.sql_string(state[0]) ~ "::timestamp" -%}
{%- set found = run_query(
    "select doc_id from " ~ latest ~ " where changed_at >= " ~ since
    ~ " union select doc_id from " ~ chunks ~ " where chunked_at >= " ~ since
    ~ " union select chunks.doc_id from " ~ chunks ~ " as chunks semi join ("
    ~ " select vectors.chunk_hash from " ~ vectors ~ " as vectors"
    ~ " where vectors.embedded_at >= " ~ since ~ " and vectors.error is null"
    ~ " and vectors.model_id = (select model_id from " ~ embedder ~ ")"
    ~ ") as arrived on chunks.chunk_hash = arrived.chunk_hash"
    ~ " limit " ~ (max_candidates + 1)).columns[0].values() | list -%}
{%- if found | length > max_candidates -%}
    {{ return(none) }}
{%- endif -%}
{{ return(found) }}
{%- endmacro %}

{#- A SQL condition: `column` is one of `doc_ids` (false for none). -#}
{% macro doc_id_in(column, doc_ids) -%}
{%- if doc_ids | length == 0 -%}
    false
{%- else -%}
    {{ column }} in (
    {%- for doc_id in doc_ids -%}
        {{ rag_store.sql_string(doc_id) }}{{ ', ' if not loop.last }}
    {%- endfor -%}
    )
{%- endif -%}
{%- endmacro %}
