{#- `dbt run-operation search --args '{query: "how do I ...", k: 5, mode: hybrid}'` prints
    the top hits; mode is vector (default), keyword or hybrid. -#}
{% macro search(query, k=5, where=none, mode='vector') %}
{%- if mode == 'vector' -%}
    {%- set sql = rag_store.vector_search(query, k, where) -%}
{%- elif mode == 'keyword' -%}
    {%- set sql = rag_store.keyword_search(query, k, where) -%}
{%- elif mode == 'hybrid' -%}
    {%- set sql = rag_store.hybrid_search(query, k, where) -%}
{%- else -%}
    {{ exceptions.raise_compiler_error("search: mode must be vector, keyword or hybrid, got " ~ mode) }}
{%- endif -%}
{%- set results = run_query(sql) -%}
{%- do log("query (" ~ mode ~ "): " ~ query, info=true) -%}
{%- for row in results.rows -%}
    {%- set snippet = row['chunk_text'] | replace('\n', ' ') | truncate(160, true, '…') -%}
    {%- do log(
        "%2d. %.3f  %s  [%s]  %s"
        | format(loop.index, row['score'], row['doc_id'], row['heading_path'] or '-', snippet),
        info=true) -%}
{%- endfor -%}
{% endmacro %}
