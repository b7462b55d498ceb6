{#- `dbt run-operation search --args '{query: "how do I ...", k: 5}'` prints the top hits. -#}
{% macro search(query, k=5, where=none) %}
{%- set results = run_query(rag_store.vector_search(query, k, where)) -%}
{%- do log("query: " ~ query, info=true) -%}
{%- for row in results.rows -%}
    {%- set snippet = row['chunk_text'] | replace('\n', ' ') | truncate(160, true, '…') -%}
    {%- do log(
        "%2d. %.3f  %s  [%s]  %s"
        | format(loop.index, row['score'], row['doc_id'], row['heading_path'] or '-', snippet),
        info=true) -%}
{%- endfor -%}
{% endmacro %}
