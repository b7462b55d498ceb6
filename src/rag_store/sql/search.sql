-- The one definition of every search, as DuckDB table macros. Rendered per store by
-- rag_store.search_macros: $schema is where the macros live, $store the retrieval_store
-- relation, $embedder a one-row relation holding the store's model_id, $fts_schema the
-- schema of the store's BM25 index, $dimension the vector dimension. All results are
-- ordered by score, then chunk_id, so ties are deterministic. Filters: doc_id / title /
-- source_uri LIKE patterns and an inclusive updated_at range.

-- The store's searchable columns, narrowed by the metadata filters every search accepts.
create or replace macro $schema.filtered_store(
    doc_id_like, title_like, source_uri_like, updated_after, updated_before
) as table
    select
        store.chunk_id,
        store.doc_id,
        store.chunk_index,
        store.title,
        store.heading_path,
        store.chunk_text,
        store.source_uri,
        store.doc_updated_at,
        store.page_start,
        store.page_end,
        store.page_kind,
        store.embedding
    from $store as store
    where
        coalesce(store.doc_id like doc_id_like, false)
        and coalesce(store.title like title_like, title_like = '%')
        and coalesce(store.source_uri like source_uri_like, source_uri_like = '%')
        and store.doc_updated_at >= updated_after::timestamp
        and store.doc_updated_at <= updated_before::timestamp;

-- Refuses a query vector whose model is not the store's: vectors of different models are
-- not comparable, and a silent mismatch returns confident nonsense.
create or replace macro $schema.checked_query_vector(query_vector, query_model_id) as
case
    when query_model_id = (select embedder.model_id from $embedder as embedder)
        then query_vector::float[$dimension]::float[]
    else error(
        'query vector is from model ' || coalesce(query_model_id, 'NULL')
        || ' but this store holds vectors of '
        || (select embedder.model_id from $embedder as embedder)
    )
end;

-- Exact cosine top-k. The query is checked and L2-normalised once, so an inner product with
-- the (unit) stored vectors is the cosine. `query_vector` may be a scalar subquery (a text
-- embedded once by the caller): it is used in one place only.
create or replace macro $schema.search_vector(
    query_vector, query_model_id, k := 10,
    doc_id_like := '%', title_like := '%', source_uri_like := '%',
    updated_after := '-infinity', updated_before := 'infinity'
) as table
    with
    checked as materialized (
        select $schema.checked_query_vector(query_vector, query_model_id) as raw_vector
    ),

    normalised as (
        select
            list_transform(
                raw_vector, x -> x / sqrt(list_sum(list_transform(raw_vector, y -> y * y)))
            )::float[$dimension] as unit_vector
        from checked
    )

    select
        candidates.* exclude (embedding),
        array_inner_product(candidates.embedding, normalised.unit_vector) as score
    from
        $schema.filtered_store(
            doc_id_like, title_like, source_uri_like, updated_after, updated_before
        ) as candidates
    cross join normalised
    order by score desc, candidates.chunk_id asc
    limit k;

create or replace macro $schema.similar_chunks(
    to_chunk_id, k := 10,
    doc_id_like := '%', title_like := '%', source_uri_like := '%',
    updated_after := '-infinity', updated_before := 'infinity'
) as table
    select
        candidates.* exclude (embedding),
        array_inner_product(candidates.embedding, origin.embedding) as score
    from
        $schema.filtered_store(
            doc_id_like, title_like, source_uri_like, updated_after, updated_before
        ) as candidates
    inner join $store as origin on origin.chunk_id = to_chunk_id
    where candidates.chunk_id != to_chunk_id
    order by score desc, candidates.chunk_id asc
    limit k;

create or replace macro $schema.search_keyword(
    query_text, k := 10,
    doc_id_like := '%', title_like := '%', source_uri_like := '%',
    updated_after := '-infinity', updated_before := 'infinity'
) as table
    with scored as (
        select
            candidates.* exclude (embedding),
            $fts_schema.match_bm25(candidates.chunk_id, query_text) as score
        from $schema.filtered_store(
            doc_id_like, title_like, source_uri_like, updated_after, updated_before
        ) as candidates
    )

    select * from scored
    where score is not null
    order by score desc, chunk_id asc
    limit k;

-- Reciprocal-rank fusion of the keyword and vector rankings (top `depth` of each):
-- score = sum over rankings of 1 / (rrf_k + rank).
create or replace macro $schema.search_hybrid(
    query_text, query_vector, query_model_id, k := 10, depth := 50, rrf_k := 60,
    doc_id_like := '%', title_like := '%', source_uri_like := '%',
    updated_after := '-infinity', updated_before := 'infinity'
) as table
    with
    keyword as (
        select
            chunk_id,
            row_number() over (order by score desc, chunk_id asc) as rank
        from $schema.search_keyword(
            query_text, k := depth, doc_id_like := doc_id_like, title_like := title_like,
            source_uri_like := source_uri_like, updated_after := updated_after,
            updated_before := updated_before
        )
    ),

    vector as (
        select
            chunk_id,
            row_number() over (order by score desc, chunk_id asc) as rank
        from $schema.search_vector(
            query_vector, query_model_id, k := depth, doc_id_like := doc_id_like,
            title_like := title_like, source_uri_like := source_uri_like,
            updated_after := updated_after, updated_before := updated_before
        )
    ),

    fused as (
        select
            chunk_id,
            sum(1.0::double / (rrf_k + rank)) as score
        from (
            select * from keyword
            union all
            select * from vector
        ) as rankings
        group by chunk_id
    )

    select
        store.* exclude (embedding),
        fused.score
    from fused
    inner join $schema.filtered_store('%', '%', '%', '-infinity', 'infinity') as store
        on fused.chunk_id = store.chunk_id
    order by fused.score desc, store.chunk_id asc
    limit k;
