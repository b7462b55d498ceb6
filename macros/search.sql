{#- Search from dbt: thin callers of the search table macros (sql/search.sql) that the
    retrieval_store post-hook installs in the store's schema. Text is embedded once on
    dbt's connection with the active embedder (int_active_embedder).

    query:   text, or (vector_search only) a list of numbers of the store's dimension.
    k:       positive integer.
    filters: optional mapping of the table macros' filters: doc_id_like, title_like,
             source_uri_like (LIKE patterns), updated_after, updated_before (inclusive
             timestamps), metadata_contains (a mapping the document's metadata must
             contain), e.g. {'doc_id_like': 'api/%', 'metadata_contains': {'team': 'hr'}}.
    principals: optional list of the users and groups searched for: documents with
             allowed_principals are returned only when one of them matches. Omitted: every
             document, or only public ones when var acl_deny_by_default is true.
    Results: chunk_id, doc_id, chunk_index, title, heading_path, chunk_text, source_uri,
    doc_updated_at, page_start, page_end, page_kind, metadata, score; ordered by score,
    then chunk_id. -#}

{% macro vector_search(query, k=10, filters=none, principals=none) -%}
    {{ return(adapter.dispatch('vector_search', 'rag_store')(query, k, filters, principals)) }}
{%- endmacro %}

{% macro default__vector_search(query, k, filters, principals) -%}
{{ rag_store.check_search_arguments('vector_search', query, k, vectors_allowed=true) }}
{{ rag_store.query_embedding(query) }}
select * from {{ ref('retrieval_store').schema }}.search_vector(
    (select query_embedding.query_vector from query_embedding),
    (select query_embedding.model_id from query_embedding),
    k := {{ k | int }}{{ rag_store.search_filter_arguments(filters) }}{{ rag_store.search_principals_argument(principals) }}
)
{%- endmacro %}

{% macro keyword_search(query, k=10, filters=none, principals=none) -%}
    {{ return(adapter.dispatch('keyword_search', 'rag_store')(query, k, filters, principals)) }}
{%- endmacro %}

{% macro default__keyword_search(query, k, filters, principals) -%}
{{ rag_store.check_search_arguments('keyword_search', query, k) }}
select * from {{ ref('retrieval_store').schema }}.search_keyword(
    {{ rag_store.sql_string(query) }},
    k := {{ k | int }}{{ rag_store.search_filter_arguments(filters) }}{{ rag_store.search_principals_argument(principals) }}
)
{%- endmacro %}

{#- Reciprocal-rank fusion of the keyword and vector top-`depth` lists:
    score = sum(1 / (rrf_k + rank)). -#}
{% macro hybrid_search(query, k=10, filters=none, depth=50, rrf_k=60, principals=none) -%}
    {{ return(adapter.dispatch('hybrid_search', 'rag_store')(query, k, filters, depth, rrf_k, principals)) }}
{%- endmacro %}

{% macro default__hybrid_search(query, k, filters, depth, rrf_k, principals) -%}
{{ rag_store.check_search_arguments('hybrid_search', query, k) }}
{{ rag_store.query_embedding(query) }}
select * from {{ ref('retrieval_store').schema }}.search_hybrid(
    {{ rag_store.sql_string(query) }},
    (select query_embedding.query_vector from query_embedding),
    (select query_embedding.model_id from query_embedding),
    k := {{ k | int }},
    depth := {{ depth | int }},
    rrf_k := {{ rrf_k | int }}{{ rag_store.search_filter_arguments(filters) }}{{ rag_store.search_principals_argument(principals) }}
)
{%- endmacro %}

{#- A `with query_embedding as materialized (...)` clause: the query's vector (text embedded
    once by the active embedder, or a literal vector) and the active model_id. -#}
{% macro query_embedding(query) -%}
{%- set embedder = ref('int_active_embedder') -%}
{%- if query is string -%}
    {%- set vector = "rag_embed(" ~ rag_store.sql_string(query)
        ~ ", (select active.model_reference from " ~ embedder ~ " as active))" -%}
{%- else -%}
    {%- set vector = "[" ~ query | join(", ") ~ "]" -%}
{%- endif -%}
with query_embedding as materialized (
    select
        {{ vector }} as query_vector,
        active.model_id
    from {{ embedder }} as active
)
{%- endmacro %}

{#- `, name := 'value'` for each filter; the table macros reject an unknown name. -#}
{% macro search_filter_arguments(filters) -%}
{%- if filters is not none and filters is not mapping -%}
    {{ exceptions.raise_compiler_error("search: filters must be a mapping such as {'doc_id_like': 'api/%'}, got " ~ filters) }}
{%- endif -%}
{%- for name, value in (filters or {}).items() -%}
    {%- if name is not string or not modules.re.match('^[a-z_]+$', name) -%}
        {{ exceptions.raise_compiler_error("search: not a filter name: " ~ name) }}
    {%- endif -%}
    {%- if name == 'metadata_contains' and value is mapping -%}
        {%- set value = tojson(value) -%}
    {%- endif -%}
    , {{ name }} := {{ rag_store.sql_string(value) }}
{%- endfor -%}
{%- endmacro %}

{#- `, principals := [...]` for a list of principal names (a single name is a list of one);
    nothing when principals is none. -#}
{% macro search_principals_argument(principals) -%}
{%- if principals is none -%}
    {{ return('') }}
{%- endif -%}
{%- set names = [principals] if principals is string else principals -%}
{%- if names is mapping or names is not iterable -%}
    {{ exceptions.raise_compiler_error("search: principals must be a list of names, got " ~ principals) }}
{%- endif -%}
{%- set quoted = [] -%}
{%- for name in names -%}
    {%- do quoted.append(rag_store.sql_string(name | string | trim)) -%}
{%- endfor -%}
, principals := [{{ quoted | join(', ') }}]::varchar[]
{%- endmacro %}

{#- Shared argument checks of the search macros. -#}
{% macro check_search_arguments(macro_name, query, k, vectors_allowed=false) -%}
{%- if k is not number or k < 1 or k != k | int -%}
    {{ exceptions.raise_compiler_error(macro_name ~ ": k must be a positive integer, got " ~ k) }}
{%- endif -%}
{%- if query is string -%}
    {%- if query | trim == '' -%}
        {{ exceptions.raise_compiler_error(macro_name ~ ": query must be non-empty text") }}
    {%- endif -%}
{%- elif vectors_allowed and query is iterable and query is not mapping -%}
    {%- set dimension = var('embedding_dimension') | int -%}
    {%- if query | length != dimension -%}
        {{ exceptions.raise_compiler_error(
            macro_name ~ ": query vector has " ~ (query | length)
            ~ " dimensions, the store has " ~ dimension) }}
    {%- endif -%}
    {%- for value in query -%}
        {%- if value is not number -%}
            {{ exceptions.raise_compiler_error(macro_name ~ ": query vector must contain only numbers") }}
        {%- endif -%}
    {%- endfor -%}
{%- elif vectors_allowed -%}
    {{ exceptions.raise_compiler_error(macro_name ~ ": query must be text or a list of numbers") }}
{%- else -%}
    {{ exceptions.raise_compiler_error(macro_name ~ ": query must be non-empty text") }}
{%- endif -%}
{%- endmacro %}

{#- `dbt run-operation search --args '{query: "how do I ...", k: 5, mode: hybrid}'` prints
    the top hits; mode is vector (default), keyword or hybrid; filters and principals as
    above. -#}
{% macro search(query, k=5, mode='vector', filters=none, principals=none) %}
{%- if mode == 'vector' -%}
    {%- set sql = rag_store.vector_search(query, k, filters, principals) -%}
{%- elif mode == 'keyword' -%}
    {%- set sql = rag_store.keyword_search(query, k, filters, principals) -%}
{%- elif mode == 'hybrid' -%}
    {%- set sql = rag_store.hybrid_search(query, k, filters, principals=principals) -%}
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
