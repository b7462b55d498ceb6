"""The snapshot's search table macros on tiny hand-made stores with known answers.

Plain DuckDB, real FTS extension (from its pip package), 3-dimensional vectors.
"""

from __future__ import annotations

import duckdb
import pytest
from hand_made_store import make_store

MODEL = "tiny-model@000/d3/l2/w16"
ROWS = [
    # chunk_id, doc_id, title, heading, text, uri, updated_at, embedding
    (
        "a:0",
        "a",
        "Alpha guide",
        "",
        "red apples grow on trees",
        "https://x/a",
        "2026-01-01",
        [1, 0, 0],
    ),
    (
        "b:0",
        "b",
        "Beta guide",
        "",
        "green pears and red cherries",
        "https://x/b",
        "2026-02-01",
        [0, 1, 0],
    ),
    (
        "c:0",
        "c",
        "Gamma notes",
        "",
        "blue whales swim in oceans",
        "https://y/c",
        "2026-03-01",
        [0, 0, 1],
    ),
    # d:0 and e:0 share a vector: a tie that only chunk_id can break.
    ("d:0", "d", "Delta notes", "", "apples and pears", "https://y/d", "2026-04-01", [0.6, 0.8, 0]),
    ("e:0", "e", "Eta notes", "", "pears and apples", "https://y/e", "2026-05-01", [0.6, 0.8, 0]),
]


@pytest.fixture
def store():
    conn = make_store(
        [
            {
                "chunk_id": chunk_id,
                "doc_id": doc_id,
                "title": title,
                "heading_path": heading,
                "chunk_text": text,
                "source_uri": uri,
                "doc_updated_at": updated,
                "embedding": vector,
            }
            for chunk_id, doc_id, title, heading, text, uri, updated, vector in ROWS
        ],
        dimension=3,
        model_id=MODEL,
    )
    yield conn
    conn.close()


def ids(conn, sql, params=None):
    return [row[0] for row in conn.execute(sql, params or {}).fetchall()]


def test_vector_search_orders_by_cosine_then_chunk_id(store):
    result = store.execute(
        "select chunk_id, round(score::double, 4) from search_vector([0.6, 0.8, 0], $m, k := 3)",
        {"m": MODEL},
    ).fetchall()
    assert result == [("d:0", 1.0), ("e:0", 1.0), ("b:0", 0.8)]


def test_an_unnormalised_query_vector_scores_as_cosine(store):
    scaled = store.execute(
        "select chunk_id, round(score::double, 4) from search_vector([6, 8, 0], $m, k := 3)",
        {"m": MODEL},
    ).fetchall()
    assert scaled == [("d:0", 1.0), ("e:0", 1.0), ("b:0", 0.8)]
    as_text = store.execute(
        "select chunk_id from search_vector('[0, 0, 2]', $m, k := 1)", {"m": MODEL}
    ).fetchall()
    assert as_text == [("c:0",)]


def test_vector_search_filters(store):
    query = "select chunk_id from search_vector([1, 1, 1], $m, k := 10, {filter})"
    assert ids(store, query.format(filter="doc_id_like := 'a'"), {"m": MODEL}) == ["a:0"]
    assert ids(store, query.format(filter="title_like := '%guide'"), {"m": MODEL}) == [
        "a:0",
        "b:0",
    ]
    assert ids(store, query.format(filter="source_uri_like := 'https://y/%'"), {"m": MODEL}) == [
        "d:0",
        "e:0",
        "c:0",
    ]
    window = "updated_after := '2026-02-01', updated_before := '2026-04-01'"
    assert sorted(ids(store, query.format(filter=window), {"m": MODEL})) == ["b:0", "c:0", "d:0"]


def test_a_vector_from_another_model_is_refused(store):
    with pytest.raises(duckdb.InvalidInputException, match="query vector is from model other"):
        store.execute("select * from search_vector([1, 0, 0], 'other@1/d3', k := 1)").fetchall()


def test_similar_chunks_excludes_the_chunk_itself(store):
    assert ids(store, "select chunk_id from similar_chunks('d:0', k := 2)") == ["e:0", "b:0"]
    assert ids(store, "select chunk_id from similar_chunks('d:0', k := 5, doc_id_like := 'a')") == [
        "a:0"
    ]


def test_keyword_search_is_bm25_over_text_and_title(store):
    assert ids(store, "select chunk_id from search_keyword('whales', k := 5)") == ["c:0"]
    # "apples" appears in a, d and e; the shorter documents rank higher under BM25.
    apples = ids(store, "select chunk_id from search_keyword('apples', k := 5)")
    assert set(apples) == {"a:0", "d:0", "e:0"}
    assert apples[:2] == ["d:0", "e:0"]  # equal BM25 scores: chunk_id breaks the tie
    assert ids(store, "select chunk_id from search_keyword('gamma', k := 5)") == ["c:0"]
    assert ids(store, "select chunk_id from search_keyword('nothing matches', k := 5)") == []


def test_hybrid_is_reciprocal_rank_fusion(store):
    rows = store.execute(
        "select chunk_id, score from search_hybrid('whales', [1, 0, 0], $m, k := 3, rrf_k := 60)",
        {"m": MODEL},
    ).fetchall()
    # keyword ranks c first; vector ranks a first, then d and e (tie, by chunk_id), b, c.
    scores = dict(rows)
    assert rows[0][0] in {"a:0", "c:0"}
    assert scores["c:0"] == pytest.approx(1 / 61 + 1 / 65)
    assert scores["a:0"] == pytest.approx(1 / 61)


@pytest.mark.parametrize(
    "text", ["it's; drop table retrieval_store; --", "back\\slash", "Grüße 東京 🌧️", "''"]
)
def test_query_text_is_data(store, text):
    store.execute("select * from search_keyword($t, k := 3)", {"t": text}).fetchall()
    assert store.execute("select count(*) from retrieval_store").fetchone() == (5,)
