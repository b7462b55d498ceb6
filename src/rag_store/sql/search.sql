-- The one definition of every search, as DuckDB table macros. Rendered per store by
-- rag_store.search_macros: $schema is where the macros live, $store the retrieval_store
-- relation, $embedder a one-row relation holding the store's model_id, $keyword_schema the
-- schema of the store's BM25 index and $analyzer_schema the full-text extension's analyzer
-- it was built with (sql/keyword_index.sql), $dimension the vector dimension. All results are
-- ordered by score, then chunk_id, so ties are deterministic. Filters: doc_id / title /
-- source_uri LIKE patterns, an inclusive updated_at range and `metadata_contains` (JSON the
-- document's metadata must contain). Access: `principals` (a list of users and groups) is
-- who the caller is; a chunk of a document with allowed_principals is seen only by a caller
-- sharing one of them. Without principals a caller sees every document, or only the public
-- ones in a store built with var acl_deny_by_default. Every search below reads the store
-- through filtered_store, and keyword scores use the collection statistics of what the
-- caller may read, so nothing unreadable shapes a result, a rank or a score.

-- Whether a caller with `principals` may read a document with `allowed_principals`.
create or replace macro $schema.may_read(allowed_principals, principals) as
allowed_principals is null
or (
    principals is null
    and not (select embedder.acl_deny_by_default from $embedder as embedder)
)
or coalesce(list_has_any(allowed_principals, principals::varchar[]), false);

-- The store's searchable columns, narrowed by the metadata filters every search accepts.
create or replace macro $schema.filtered_store(
    doc_id_like, title_like, source_uri_like, updated_after, updated_before,
    metadata_contains := null, principals := null
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
        store.metadata,
        store.embedding
    from $store as store
    where
        $schema.may_read(store.allowed_principals, principals)
        and coalesce(
            json_contains(store.metadata, metadata_contains::json), metadata_contains is null
        )
        and coalesce(store.doc_id like doc_id_like, false)
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
    updated_after := '-infinity', updated_before := 'infinity',
    metadata_contains := null, principals := null
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
            doc_id_like, title_like, source_uri_like, updated_after, updated_before,
            metadata_contains := metadata_contains, principals := principals
        ) as candidates
    cross join normalised
    order by score desc, candidates.chunk_id asc
    limit k;

create or replace macro $schema.similar_chunks(
    to_chunk_id, k := 10,
    doc_id_like := '%', title_like := '%', source_uri_like := '%',
    updated_after := '-infinity', updated_before := 'infinity',
    metadata_contains := null, principals := null
) as table
    select
        candidates.* exclude (embedding),
        array_inner_product(candidates.embedding, origin.embedding) as score
    from
        $schema.filtered_store(
            doc_id_like, title_like, source_uri_like, updated_after, updated_before,
            metadata_contains := metadata_contains, principals := principals
        ) as candidates
    -- the chunk compared to must be one the caller may read, or there is no answer at all
    inner join $schema.filtered_store(
        '%', '%', '%', '-infinity', 'infinity', principals := principals
    ) as origin on origin.chunk_id = to_chunk_id
    where candidates.chunk_id != to_chunk_id
    order by score desc, candidates.chunk_id asc
    limit k;

-- BM25 (k1 = 1.2, b = 0.75, as DuckDB's match_bm25) over the chunks the caller may read,
-- from the store's keyword index (sql/keyword_index.sql): the document count, mean length
-- and each term's document frequency leave out every chunk the caller may not read, so a
-- caller's scores are those of a store holding only what it may read.
create or replace macro $schema.search_keyword(
    query_text, k := 10,
    doc_id_like := '%', title_like := '%', source_uri_like := '%',
    updated_after := '-infinity', updated_before := 'infinity',
    metadata_contains := null, principals := null
) as table
    with
    query_terms as (
        select distinct stem(unnest($analyzer_schema.tokenize(query_text)), 'porter') as term
    ),

    postings as (
        select
            terms.chunk_id,
            terms.term,
            terms.tf
        from $keyword_schema.terms as terms
        where terms.term in (select query_terms.term from query_terms)
    ),

    unreadable as (
        select
            docs.chunk_id,
            docs.len
        from $store as store
        inner join $keyword_schema.docs as docs on store.chunk_id = docs.chunk_id
        where not $schema.may_read(store.allowed_principals, principals)
    ),

    collection as (
        select
            count(*) - (select count(*) from unreadable) as num_docs,
            (sum(docs.len) - (select coalesce(sum(unreadable.len), 0) from unreadable))
            / nullif(count(*) - (select count(*) from unreadable), 0) as avgdl
        from $keyword_schema.docs as docs
    ),

    readable_postings as (
        select postings.*
        from postings
        anti join unreadable on postings.chunk_id = unreadable.chunk_id
    ),

    readable_df as (
        select
            term,
            count(*) as df
        from readable_postings
        group by term
    ),

    scores as (
        select
            readable_postings.chunk_id,
            sum(
                log((collection.num_docs - readable_df.df + 0.5) / (readable_df.df + 0.5) + 1)
                * readable_postings.tf * (1.2 + 1)
                / (
                    readable_postings.tf
                    + 1.2 * (1 - 0.75 + 0.75 * docs.len / collection.avgdl)
                )
            ) as score
        from readable_postings
        inner join readable_df on readable_postings.term = readable_df.term
        inner join $keyword_schema.docs as docs on readable_postings.chunk_id = docs.chunk_id
        cross join collection
        group by readable_postings.chunk_id
    )

    select
        candidates.* exclude (embedding),
        scores.score
    from
        $schema.filtered_store(
            doc_id_like, title_like, source_uri_like, updated_after, updated_before,
            metadata_contains := metadata_contains, principals := principals
        ) as candidates
    inner join scores on candidates.chunk_id = scores.chunk_id
    order by scores.score desc, candidates.chunk_id asc
    limit k;

-- Reciprocal-rank fusion of the keyword and vector rankings (top `depth` of each):
-- score = sum over rankings of 1 / (rrf_k + rank).
create or replace macro $schema.search_hybrid(
    query_text, query_vector, query_model_id, k := 10, depth := 50, rrf_k := 60,
    doc_id_like := '%', title_like := '%', source_uri_like := '%',
    updated_after := '-infinity', updated_before := 'infinity',
    metadata_contains := null, principals := null
) as table
    with
    keyword as (
        select
            chunk_id,
            row_number() over (order by score desc, chunk_id asc) as rank
        from $schema.search_keyword(
            query_text, k := depth, doc_id_like := doc_id_like, title_like := title_like,
            source_uri_like := source_uri_like, updated_after := updated_after,
            updated_before := updated_before, metadata_contains := metadata_contains,
            principals := principals
        )
    ),

    vector as (
        select
            chunk_id,
            row_number() over (order by score desc, chunk_id asc) as rank
        from $schema.search_vector(
            query_vector, query_model_id, k := depth, doc_id_like := doc_id_like,
            title_like := title_like, source_uri_like := source_uri_like,
            updated_after := updated_after, updated_before := updated_before,
            metadata_contains := metadata_contains, principals := principals
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
    inner join $schema.filtered_store(
        '%', '%', '%', '-infinity', 'infinity', principals := principals
    ) as store on fused.chunk_id = store.chunk_id
    order by fused.score desc, store.chunk_id asc
    limit k;
