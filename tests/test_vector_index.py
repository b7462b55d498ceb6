"""The server's in-memory vector index returns exactly what the search macros return: the
same chunks, in the same order, with the same scores (bit for bit; the check allows 1e-6),
for random stores, with filters, with tied scores (duplicate vectors) and in hybrid fusion.

The stores are written directly with raw vectors (no model, no dbt): the index and the
macros see only vectors and rows, so a real embedder would add nothing but minutes.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_store import search, search_macros
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
    conn = duckdb.connect(":memory:")
    conn.execute(
        f"""
        create table retrieval_store (
            chunk_id varchar, doc_id varchar, chunk_index integer, title varchar,
            heading_path varchar, chunk_text varchar, source_uri varchar,
            doc_updated_at timestamp, model_id varchar, embedding float[{dimension}]
        )
        """
    )
    conn.execute("create table store_info as select $m as model_id", {"m": MODEL_ID})
    prefixes = ("a", "b", "c_", "c")
    rows = []
    for number in rng.permutation(count):
        doc = f"{prefixes[number % len(prefixes)]}/{number // 3}"
        updated = datetime(2026, 1, 1) + timedelta(hours=int(number) * 7)
        rows.append(
            (
                f"{doc}:{number % 3}",
                doc,
                int(number % 3),
                None if nulls and number % 7 == 3 else f"Title {number % 5}",
                "Section",
                " ".join(rng.choice(WORDS, size=6)),
                None if nulls and number % 5 == 2 else f"https://x.example/{doc}",
                None if nulls and number % 11 == 6 else updated,
                MODEL_ID,
                [float(x) for x in vectors[number]],
            )
        )
    conn.executemany("insert into retrieval_store values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    # Page provenance on some documents (as a converted PDF has), none on the others.
    for column in ("page_start integer", "page_end integer", "page_kind varchar"):
        conn.execute(f"alter table retrieval_store add column {column}")
    conn.execute(
        "update retrieval_store set page_start = chunk_index + 1, "
        "page_end = chunk_index + 2, page_kind = 'page' where doc_id like 'a/%'"
    )
    search_macros.install(conn, search_macros.StoreLayout(), dimension)
    return conn


ALL = search.Filters()


def sql_vector(conn, query, k, filters=ALL):
    return search.call_search_macro(
        conn, "vector", k, query_vector=query, model_id=MODEL_ID, filters=filters, schema="main"
    )


def index_vector(conn, index, query, k, filters=ALL):
    mask = index.mask(conn, "main", filters)
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
        },
    ),
)
def test_the_index_ranks_and_scores_as_search_vector(store, k, query_kind, filter_args):
    count, dimension, coarse, seed = store
    rng = np.random.default_rng(seed)
    vectors = vectors_with_ties(rng, count, dimension, coarse)
    with make_store(vectors, rng) as conn:
        index = VectorIndex.build(conn, "main", search.AccessControl())
        if query_kind == "random":
            query = rng.standard_normal(dimension).astype(np.float32)
        else:  # a stored vector (exact ties with its copies), or it scaled by 3
            query = vectors[rng.integers(count)] * np.float32(3 if query_kind == "scaled" else 1)
        filters = search.Filters(**filter_args)
        assert_same(
            sql_vector(conn, query.tolist(), k, filters),
            index_vector(conn, index, query, k, filters),
        )


@SETTINGS
@given(store=stores(), k=st.integers(1, 30), text=st.sampled_from(("water", "bike chain")))
def test_hybrid_fusion_matches_search_hybrid(store, k, text):
    count, dimension, coarse, seed = store
    rng = np.random.default_rng(seed)
    vectors = vectors_with_ties(rng, count, dimension, coarse)
    with make_store(vectors, rng) as conn:
        index = VectorIndex.build(conn, "main", search.AccessControl())
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
        )
        keyword = search.call_search_macro(
            conn, "keyword", HYBRID_DEPTH, query_text=text, filters=filters, schema="main"
        )
        vector = index_vector(conn, index, query, HYBRID_DEPTH, filters)
        assert fuse_hybrid(keyword, vector, k) == expected


def test_a_batch_of_questions_is_ranked_as_each_alone():
    rng = np.random.default_rng(7)
    vectors = vectors_with_ties(rng, 300, 384, coarse=False)
    with make_store(vectors, rng, nulls=False) as conn:
        index = VectorIndex.build(conn, "main", search.AccessControl())
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
        index = VectorIndex.build(conn, "main", search.AccessControl())
        nothing = search.Filters(doc_id_like="zzz%")
        assert index_vector(conn, index, vectors[0], 5, nothing) == []
        assert sql_vector(conn, vectors[0].tolist(), 5, nothing) == []
        conn.execute("delete from retrieval_store")
        empty = VectorIndex.build(conn, "main", search.AccessControl())
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
        with pytest.raises(IndexUnavailable, match="restricts"):
            VectorIndex.build(conn, "main", search.AccessControl(True, True))
        conn.execute("update retrieval_store set embedding = null where chunk_index = 1")
        with pytest.raises(IndexUnavailable, match="NULL"):
            VectorIndex.build(conn, "main", search.AccessControl())


def test_candidates_from_torchs_matrix_product_rank_the_same():
    """A server with a real model picks candidates with torch's matrix product (another
    summation order than numpy's); the exact re-scoring makes the results the same."""
    pytest.importorskip("torch")
    assert "torch" in sys.modules
    test_a_batch_of_questions_is_ranked_as_each_alone()
