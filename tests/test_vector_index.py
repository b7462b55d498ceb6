"""The server's in-memory vector index returns exactly what the search macros return: the
same chunks, in the same order, with the same scores (bit for bit; the check allows 1e-6),
for random stores, with filters, metadata filters and callers' principals, with tied scores
(duplicate vectors) and in hybrid fusion. Its keyword copy (rag_store.keyword_memory)
ranks as search_keyword ranks, with its scores to the last bits, under the same filters and
callers, with the collection statistics of what each caller may read.

The stores are written directly with raw vectors (no model, no dbt): the index and the
macros see only vectors and rows, so a real embedder would add nothing but minutes.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pytest
from hand_made_store import make_store as hand_made
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_store import search
from rag_store.keyword_memory import KeywordIndex
from rag_store.vector_index import (
    HYBRID_DEPTH,
    IndexUnavailable,
    VectorIndex,
    fuse_hybrid,
    unit_vector,
)

MODEL_ID = "test-model"
WORDS = ("water", "plant", "battery", "alarm", "bike", "chain", "bread", "train", "night")
PATTERNS = ("%", "a/%", "%1", "b/_", "%/%", "c\\_%", "a/1%")
TIMES = ("-infinity", "infinity", "2026-01-03T00:00:00", "2026-01-05T12:00:00")
TEAMS = ("hr", "eng", "ops")
# Who may read each document (None: public), and who asks.
PRINCIPAL_SETS = (None, None, ["hr"], ["eng", "hr"], ["alice"], [])
CALLERS = st.one_of(st.none(), st.lists(st.sampled_from(("hr", "eng", "alice", "bob")), max_size=3))
METADATA_FILTERS = (
    '{"team": "hr"}',
    '{"n": 1}',
    "{}",
    '{"team": "zzz"}',
    '{"team": "eng", "n": 2}',
)
SETTINGS = settings(
    derandomize=True,
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def make_store(vectors: np.ndarray, rng: np.random.Generator, nulls: bool = True):
    """An in-memory DuckDB database holding a retrieval_store of `vectors` (rows in a
    shuffled order, so the index's chunk_id order is not the insertion order), store_info,
    the BM25 index and the search macros."""
    count, dimension = vectors.shape
    prefixes = ("a", "b", "c_", "c")
    rows = []
    for number in map(int, rng.permutation(count)):
        doc = f"{prefixes[number % len(prefixes)]}/{number // 3}"
        updated = datetime(2026, 1, 1) + timedelta(hours=int(number) * 7)
        rows.append(
            {
                "chunk_id": f"{doc}:{number % 3}",
                "doc_id": doc,
                "chunk_index": int(number % 3),
                "title": None if nulls and number % 7 == 3 else f"Title {number % 5}",
                "heading_path": "Section",
                "chunk_text": " ".join(rng.choice(WORDS, size=6)),
                "source_uri": None if nulls and number % 5 == 2 else f"https://x.example/{doc}",
                "doc_updated_at": None if nulls and number % 11 == 6 else updated,
                # Page provenance on some documents (as a converted PDF has), none on others.
                "page_start": number % 3 + 1 if doc.startswith("a/") else None,
                "page_end": number % 3 + 2 if doc.startswith("a/") else None,
                "page_kind": "page" if doc.startswith("a/") else None,
                "metadata": {"team": TEAMS[number % len(TEAMS)], "n": int(number % 4)},
                "allowed_principals": PRINCIPAL_SETS[number % len(PRINCIPAL_SETS)],
                "embedding": vectors[number],
            }
        )
    return hand_made(rows, dimension, MODEL_ID)


ALL = search.Filters()


def sql_vector(conn, query, k, filters=ALL, principals=None):
    return search.call_search_macro(
        conn,
        "vector",
        k,
        query_vector=query,
        model_id=MODEL_ID,
        filters=filters,
        schema="main",
        access=search.access_control(conn, "main"),
        principals=principals,
    )


def build_index(conn) -> VectorIndex:
    return VectorIndex.build(conn, "main", search.access_control(conn, "main"))


def index_vector(conn, index, query, k, filters=ALL, principals=None):
    mask = index.mask(conn, "main", filters, principals)
    return index.hits(index.search([query], [k], [mask])[0])


def assert_same(expected: list[search.Hit], got: list[search.Hit]) -> None:
    assert [hit.chunk_id for hit in got] == [hit.chunk_id for hit in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert abs(mine.score - theirs.score) <= 1e-6
        assert mine == theirs  # every column, and in practice the score bit for bit


def vectors_with_ties(rng, count: int, dimension: int, coarse: bool) -> np.ndarray:
    """Unit float32 vectors; `coarse` draws components from {-1, 0, 1}, so many rows are
    duplicates (equal scores, ranked by chunk_id)."""
    if coarse:
        raw = rng.integers(-1, 2, size=(count, dimension)).astype(np.float32)
        raw[~raw.any(axis=1), 0] = 1.0
    else:
        raw = rng.standard_normal((count, dimension)).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    if count > 3:  # exact copies of rows under other chunk_ids
        raw[count // 2] = raw[0]
        raw[count - 1] = raw[1]
    return raw


@st.composite
def stores(draw):
    count = draw(st.integers(1, 80))
    dimension = draw(st.sampled_from((2, 5, 16, 384)))
    coarse = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return count, dimension, coarse, seed


@SETTINGS
@given(
    store=stores(),
    k=st.integers(1, 100),
    query_kind=st.sampled_from(("random", "stored", "scaled")),
    filter_args=st.fixed_dictionaries(
        {},
        optional={
            "doc_id_like": st.sampled_from(PATTERNS),
            "title_like": st.sampled_from((*PATTERNS, "Title 1", "%2")),
            "source_uri_like": st.sampled_from((*PATTERNS, "https://%")),
            "updated_after": st.sampled_from(TIMES),
            "updated_before": st.sampled_from(TIMES),
            "metadata_contains": st.sampled_from(METADATA_FILTERS),
        },
    ),
    principals=CALLERS,
)
def test_the_index_ranks_and_scores_as_search_vector(store, k, query_kind, filter_args, principals):
    count, dimension, coarse, seed = store
    rng = np.random.default_rng(seed)
    vectors = vectors_with_ties(rng, count, dimension, coarse)
    with make_store(vectors, rng) as conn:
        index = build_index(conn)
        if query_kind == "random":
            query = rng.standard_normal(dimension).astype(np.float32)
        else:  # a stored vector (exact ties with its copies), or it scaled by 3
            query = vectors[rng.integers(count)] * np.float32(3 if query_kind == "scaled" else 1)
        filters = search.Filters(**filter_args)
        assert_same(
            sql_vector(conn, query.tolist(), k, filters, principals),
            index_vector(conn, index, query, k, filters, principals),
        )


@SETTINGS
@given(
    store=stores(),
    k=st.integers(1, 30),
    text=st.sampled_from(("water", "bike chain")),
    principals=CALLERS,
)
def test_hybrid_fusion_matches_search_hybrid(store, k, text, principals):
    count, dimension, coarse, seed = store
    rng = np.random.default_rng(seed)
    vectors = vectors_with_ties(rng, count, dimension, coarse)
    with make_store(vectors, rng) as conn:
        index = build_index(conn)
        access = search.access_control(conn, "main")
        query = rng.standard_normal(dimension).astype(np.float32)
        filters = search.Filters(doc_id_like="a/%") if seed % 2 else search.Filters()
        expected = search.call_search_macro(
            conn,
            "hybrid",
            k,
            query_text=text,
            query_vector=query.tolist(),
            model_id=MODEL_ID,
            filters=filters,
            schema="main",
            access=access,
            principals=principals,
        )
        keyword = search.call_search_macro(
            conn,
            "keyword",
            HYBRID_DEPTH,
            query_text=text,
            filters=filters,
            schema="main",
            access=access,
            principals=principals,
        )
        vector = index_vector(conn, index, query, HYBRID_DEPTH, filters, principals)
        assert fuse_hybrid(keyword, vector, k) == expected


QUESTION_WORDS = (*WORDS, "title", "section", "Trains", "WATER!", "zebra", "3", "the")


@SETTINGS
@given(
    store=stores(),
    k=st.integers(1, 60),
    words=st.lists(st.sampled_from(QUESTION_WORDS), max_size=5),
    filter_args=st.fixed_dictionaries(
        {},
        optional={
            "doc_id_like": st.sampled_from(PATTERNS),
            "updated_after": st.sampled_from(TIMES),
            "metadata_contains": st.sampled_from(METADATA_FILTERS),
        },
    ),
    principals=CALLERS,
    orphans=st.booleans(),
)
def test_the_keyword_copy_ranks_and_scores_as_search_keyword(
    store, k, words, filter_args, principals, orphans
):
    count, dimension, coarse, seed = store
    rng = np.random.default_rng(seed)
    with make_store(vectors_with_ties(rng, count, dimension, coarse), rng) as conn:
        if orphans:  # postings of a chunk the store lost: they count in df, never score
            conn.execute(
                "insert into main_retrieval_store_keywords.terms select distinct 'gone:0', "
                "term, 2 from main_retrieval_store_keywords.terms"
            )
            conn.execute(
                "insert into main_retrieval_store_keywords.docs (chunk_id, len) "
                "values ('gone:0', 9)"
            )
        index = build_index(conn)
        keywords = KeywordIndex.build(conn, "main", index)
        question = " ".join(words)
        filters = search.Filters(**filter_args)
        expected = search.call_search_macro(
            conn,
            "keyword",
            k,
            query_text=question,
            filters=filters,
            schema="main",
            access=search.access_control(conn, "main"),
            principals=principals,
        )
        ranked = keywords.search(
            keywords.terms(conn, question),
            k,
            index.mask(conn, "main", filters, principals),
            keywords.readable(conn, principals),
        )
        got = index.hits(ranked)
        assert [hit.chunk_id for hit in got] == [hit.chunk_id for hit in expected]
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.score == pytest.approx(theirs.score, rel=1e-12)
            assert dataclasses.replace(mine, score=theirs.score) == theirs


def test_a_store_without_the_incremental_keyword_index_keeps_the_macro():
    rng = np.random.default_rng(9)
    with make_store(vectors_with_ties(rng, 12, 4, coarse=False), rng) as conn:
        index = build_index(conn)
        conn.execute("drop table main_retrieval_store_keywords.terms")
        with pytest.raises(IndexUnavailable, match="no incremental keyword index"):
            KeywordIndex.build(conn, "main", index)


def test_a_batch_of_questions_is_ranked_as_each_alone():
    rng = np.random.default_rng(7)
    vectors = vectors_with_ties(rng, 300, 384, coarse=False)
    with make_store(vectors, rng, nulls=False) as conn:
        index = build_index(conn)
        queries = [rng.standard_normal(384).astype(np.float32) for _ in range(12)]
        queries.append(vectors[5].copy())
        ks = [1, 3, 10, 50, 100, 300, 400, 2, 10, 10, 7, 1, 20]
        filters = [search.Filters(), search.Filters(doc_id_like="b/%")] * 6 + [search.Filters()]
        masks = [index.mask(conn, "main", f) for f in filters]
        batch = index.search(queries, ks, masks)
        for query, k, f, ranked in zip(queries, ks, filters, batch, strict=True):
            assert_same(sql_vector(conn, query.tolist(), k, f), index.hits(ranked))


def test_a_filter_that_admits_nothing_and_an_empty_store():
    rng = np.random.default_rng(3)
    vectors = vectors_with_ties(rng, 20, 8, coarse=True)
    with make_store(vectors, rng) as conn:
        index = build_index(conn)
        nothing = search.Filters(doc_id_like="zzz%")
        assert index_vector(conn, index, vectors[0], 5, nothing) == []
        assert sql_vector(conn, vectors[0].tolist(), 5, nothing) == []
        conn.execute("delete from retrieval_store")
        empty = build_index(conn)
        assert empty.count == 0 and empty.hits(empty.search([vectors[0]], [5])[0]) == []


def test_the_query_is_normalised_as_the_macro_normalises_it():
    rng = np.random.default_rng(11)
    with duckdb.connect(":memory:") as conn:
        for dimension in (3, 384):
            raw = (rng.standard_normal(dimension) * 5).astype(np.float32)
            literal = search.vector_literal(raw)
            (macro,) = conn.execute(
                f"select list_transform(v, x -> x / sqrt(list_sum(list_transform(v, y -> y * y))))"
                f"::float[{dimension}] from (select $v::float[{dimension}]::float[] as v)",
                {"v": literal},
            ).fetchone()
            assert np.array_equal(unit_vector(raw), np.asarray(macro, dtype=np.float32))
    with pytest.raises(ValueError):
        unit_vector(np.zeros(4, dtype=np.float32))


def test_stores_the_index_cannot_rank_exactly_are_left_to_sql():
    rng = np.random.default_rng(5)
    vectors = vectors_with_ties(rng, 10, 4, coarse=False)
    with make_store(vectors, rng, nulls=False) as conn:
        conn.execute("update retrieval_store set embedding = null where chunk_index = 1")
        with pytest.raises(IndexUnavailable, match="NULL"):
            VectorIndex.build(conn, "main", search.AccessControl())


def test_candidates_from_torchs_matrix_product_rank_the_same():
    """A server with a real model picks candidates with torch's matrix product (another
    summation order than numpy's); the exact re-scoring makes the results the same."""
    pytest.importorskip("torch")
    assert "torch" in sys.modules
    test_a_batch_of_questions_is_ranked_as_each_alone()
