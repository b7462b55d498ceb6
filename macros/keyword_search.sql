{% macro create_keyword_index(relation) -%}
{#- Post-hook: (re)builds the BM25 index of `relation` unless the indexed columns are
    unchanged since the index was built. The index is keyed by chunk_id, so it stays valid
    when dbt recreates the table with the same rows; a fingerprint of the indexed text is
    kept in a table inside the index's own schema (dropped with it on every rebuild). -#}
{%- if not execute -%}
    {{ return('select 1') }}
{%- endif -%}
{%- set index_schema = 'fts_' ~ relation.schema ~ '_' ~ relation.identifier -%}
{%- set fingerprint = run_query(
    "select count(*)::varchar || ':' || coalesce(bit_xor(hash(chunk_id, title, heading_path, "
    ~ "chunk_text)), 0)::varchar from " ~ relation).columns[0].values()[0] -%}
{%- set state = adapter.get_relation(
    database=relation.database, schema=index_schema, identifier='rag_indexed_content') -%}
{%- if state is not none -%}
    {%- set indexed = run_query('select fingerprint from ' ~ state).columns[0].values() -%}
    {%- if indexed | length == 1 and indexed[0] == fingerprint -%}
        {%- do log('rag-store: keyword index of ' ~ relation.identifier ~ ' is current', info=true) -%}
        {{ return('select 1') }}
    {%- endif -%}
{%- endif -%}
{%- do run_query(
    "pragma create_fts_index('" ~ relation.schema ~ "." ~ relation.identifier
    ~ "', 'chunk_id', 'title', 'heading_path', 'chunk_text', overwrite = 1)") -%}
{%- do run_query(
    "create or replace table " ~ index_schema ~ ".rag_indexed_content as select '"
    ~ fingerprint ~ "' as fingerprint") -%}
select 1
{%- endmacro %}

{#- Top-k chunks of retrieval_store by BM25 score for `query` (title, heading path and
    chunk text), ties broken by chunk_id. `where`: optional SQL predicate over
    retrieval_store columns. The snapshot's search_keyword table macro is the same search. -#}
{% macro keyword_search(query, k=10, where=none) -%}
    {{ return(adapter.dispatch('keyword_search', 'rag_store')(query, k, where)) }}
{%- endmacro %}

{% macro default__keyword_search(query, k, where) -%}
{{ rag_store.check_search_arguments('keyword_search', query, k) }}
{%- set store = ref('retrieval_store') -%}
with

scored_chunks as (
    select
        {{ rag_store.search_result_columns('store') }},
        fts_{{ store.schema }}_{{ store.identifier }}.match_bm25(
            store.chunk_id, {{ rag_store.sql_string(query) }}
        ) as score
    from {{ store }} as store
    {%- if where %}
    where {{ where }}
    {%- endif %}
)

select * from scored_chunks
where score is not null
order by score desc, chunk_id asc
limit {{ k | int }}
{%- endmacro %}

{#- Reciprocal-rank fusion of keyword_search and vector_search: each chunk scores
    sum(1 / (rrf_k + rank)) over the two top-`depth` lists. The snapshot's search_hybrid
    table macro is the same search. -#}
{% macro hybrid_search(query, k=10, where=none, depth=50, rrf_k=60) -%}
    {{ return(adapter.dispatch('hybrid_search', 'rag_store')(query, k, where, depth, rrf_k)) }}
{%- endmacro %}

{% macro default__hybrid_search(query, k, where, depth, rrf_k) -%}
{{ rag_store.check_search_arguments('hybrid_search', query, k) }}
with

keyword_ranking as (
    select
        chunk_id,
        row_number() over (order by score desc, chunk_id asc) as search_rank
    from ({{ rag_store.keyword_search(query, depth, where) }})
),

vector_ranking as (
    select
        chunk_id,
        row_number() over (order by score desc, chunk_id asc) as search_rank
    from ({{ rag_store.vector_search(query, depth, where) }})
),

fused as (
    select
        chunk_id,
        sum(1.0::double / ({{ rrf_k | int }} + search_rank)) as score
    from (
        select * from keyword_ranking
        union all
        select * from vector_ranking
    )
    group by chunk_id
)

select
    {{ rag_store.search_result_columns('store') }},
    fused.score
from fused
inner join {{ ref('retrieval_store') }} as store on fused.chunk_id = store.chunk_id
order by fused.score desc, store.chunk_id asc
limit {{ k | int }}
{%- endmacro %}

{#- Shared argument checks of the text search macros. -#}
{% macro check_search_arguments(macro_name, query, k) -%}
{%- if k is not number or k < 1 or k != k | int -%}
    {{ exceptions.raise_compiler_error(macro_name ~ ": k must be a positive integer, got " ~ k) }}
{%- endif -%}
{%- if query is not string or query | trim == '' -%}
    {{ exceptions.raise_compiler_error(macro_name ~ ": query must be non-empty text") }}
{%- endif -%}
{%- endmacro %}
