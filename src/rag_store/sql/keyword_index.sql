-- The store's BM25 index, kept in step with the store chunk by chunk: a build that changed
-- ten documents tokenizes their chunks only, whatever the size of the store. Rendered per
-- store by rag_store.search_macros: $store is the retrieval_store relation, $keyword_schema
-- the schema holding the index, $analyzer_schema the schema of DuckDB's full-text
-- extension whose `tokenize` macro and `stopwords` table define a term (an fts index made
-- over an empty table, so terms are exactly the ones match_bm25 would use).
--   docs:  one row per chunk of the store: its chunk_hash and content_hash when it was
--          indexed, its length in terms (every chunk has a row, a termless one too) and
--          when it was indexed
--   terms: one row per (chunk, term): how often the term occurs in the chunk's title,
--          heading path and text together
-- A chunk is (re)indexed when its chunk_id, chunk_hash or content_hash is new; the indexed
-- text (title, heading_path, chunk_text) is a function of those. $store must have
-- retrieval_store's stored_at column, stamped whenever a row is written: a row written with
-- a stamp older than the index's newest indexed_at is not looked at. Run the statements in
-- order, in one transaction, after rag_store.search_macros.keyword_index_sql's analyzer
-- statements.

create table if not exists $keyword_schema.docs (
    chunk_id varchar,
    chunk_hash varchar,
    content_hash varchar,
    len integer,
    indexed_at timestamp
);

create table if not exists $keyword_schema.terms (
    chunk_id varchar,
    term varchar,
    tf integer
);

-- The chunks to (re)index: indexed chunks the store no longer holds, and store rows written
-- since the index was last brought up to date (stored_at, which retrieval_store stamps on
-- every row it writes, at or after the newest indexed_at; a row without a stamp is always
-- looked at) whose chunk_id, chunk_hash or content_hash the index does not have. The
-- store's older rows were looked at when they were written, and their row groups are
-- skipped by the stamp, so a build costs what it changed.
create or replace temp table rag_keyword_changes as
select indexed.chunk_id
from $keyword_schema.docs as indexed
anti join $store as store on indexed.chunk_id = store.chunk_id
union
select store.chunk_id
from $store as store
anti join $keyword_schema.docs as indexed
    on
        store.chunk_id = indexed.chunk_id
        and store.chunk_hash = indexed.chunk_hash
        and store.content_hash is not distinct from indexed.content_hash
where
    store.stored_at is null
    or store.stored_at >= (
        select coalesce(max(newest.indexed_at), '-infinity'::timestamp)
        from $keyword_schema.docs as newest
    );

delete from $keyword_schema.terms
where chunk_id in (select changes.chunk_id from rag_keyword_changes as changes);

delete from $keyword_schema.docs
where chunk_id in (select changes.chunk_id from rag_keyword_changes as changes);

create or replace temp table rag_keyword_postings as
with
tokens as (
    select
        store.chunk_id,
        unnest(list_concat(
            $analyzer_schema.tokenize(coalesce(store.title, '')),
            $analyzer_schema.tokenize(coalesce(store.heading_path, '')),
            $analyzer_schema.tokenize(coalesce(store.chunk_text, ''))
        )) as token
    from $store as store
    semi join rag_keyword_changes as changes on store.chunk_id = changes.chunk_id
)

select
    tokens.chunk_id,
    stem(tokens.token, 'porter') as term,
    count(*)::integer as tf
from tokens
where
    tokens.token != ''
    and tokens.token not in (select stopwords.sw from $analyzer_schema.stopwords as stopwords)
group by tokens.chunk_id, term;

insert into $keyword_schema.terms
select
    postings.chunk_id,
    postings.term,
    postings.tf
from rag_keyword_postings as postings
order by postings.term;

insert into $keyword_schema.docs
with
lengths as (
    select
        postings.chunk_id,
        sum(postings.tf)::integer as len
    from rag_keyword_postings as postings
    group by postings.chunk_id
)

select
    store.chunk_id,
    store.chunk_hash,
    store.content_hash,
    coalesce(lengths.len, 0) as len,
    now() at time zone 'UTC' as indexed_at
from $store as store
semi join rag_keyword_changes as changes on store.chunk_id = changes.chunk_id
left join lengths on store.chunk_id = lengths.chunk_id;

drop table rag_keyword_postings;

drop table rag_keyword_changes
