{#- Top-k chunks of retrieval_store by cosine similarity to `query`.

    query:  text (embedded on dbt's connection with the store's embedder) or a list of
            numbers of the store's dimension.
    k:      positive integer.
    where:  optional SQL predicate over retrieval_store columns, e.g. "doc_id like 'api/%'".
    Ties are broken by chunk_id, so the order is deterministic. -#}
{% macro vector_search(query, k=10, where=none) -%}
    {{ return(adapter.dispatch('vector_search', 'rag_store')(query, k, where)) }}
{%- endmacro %}

{% macro default__vector_search(query, k, where) -%}
{%- if k is not number or k < 1 or k != k | int -%}
    {{ exceptions.raise_compiler_error("vector_search: k must be a positive integer, got " ~ k) }}
{%- endif -%}
{%- set dimension = var('embedding_dimension') | int -%}
{%- if query is string -%}
    {%- if query | trim == '' -%}
        {{ exceptions.raise_compiler_error("vector_search: query text is empty") }}
    {%- endif -%}
    {%- set query_vector = "rag_embed(" ~ rag_store.sql_string(query) ~ ", "
        ~ rag_store.sql_string(var('embedding_model')) ~ ")" -%}
{%- elif query is iterable and query is not mapping -%}
    {%- if query | length != dimension -%}
        {{ exceptions.raise_compiler_error(
            "vector_search: query vector has " ~ (query | length)
            ~ " dimensions, the store has " ~ dimension) }}
    {%- endif -%}
    {%- for value in query -%}
        {%- if value is not number -%}
            {{ exceptions.raise_compiler_error("vector_search: query vector must contain only numbers") }}
        {%- endif -%}
    {%- endfor -%}
    {%- set query_vector = "[" ~ query | join(", ") ~ "]" -%}
{%- else -%}
    {{ exceptions.raise_compiler_error("vector_search: query must be text or a list of numbers") }}
{%- endif -%}
with

query_embedding as (
    select ({{ query_vector }})::float[{{ dimension }}] as query_vector
),

scored_chunks as (
    select
        {{ rag_store.search_result_columns('store') }},
        array_cosine_similarity(store.embedding, query_embedding.query_vector) as score
    from {{ ref('retrieval_store') }} as store
    cross join query_embedding
    {%- if where %}
    where {{ where }}
    {%- endif %}
)

select * from scored_chunks
order by score desc, chunk_id asc
limit {{ k | int }}
{%- endmacro %}

{#- The retrieval_store columns every search macro returns (before its score). -#}
{% macro search_result_columns(alias) -%}
{%- for column in ['chunk_id', 'doc_id', 'chunk_index', 'title', 'heading_path',
    'chunk_text', 'source_uri', 'doc_updated_at'] -%}
    {{ alias }}.{{ column }}{{ ',' if not loop.last }}
{% endfor -%}
{%- endmacro %}
