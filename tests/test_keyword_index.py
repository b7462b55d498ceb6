"""The keyword index is kept up to date chunk by chunk (sql/keyword_index.sql): after any
sequence of inserts, edits and deletes it must equal an index built from scratch over the
same store, and its BM25 scores must equal DuckDB's own fts index (match_bm25). Hand-made
in-memory stores: the property is about SQL, not about a build."""

from __future__ import annotations

import duckdb
import pytest
from hand_made_store import duckdb_bm25_index, make_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_store.duckdb_ext import load_extension
from rag_store.search_macros import StoreLayout, keyword_index_sql

DIMENSION = 4
MODEL_ID = "test/d4"
LAYOUT = StoreLayout()
WORDS = [
    *("Running", "runs", "the", "salary", "Zürich", "café", "e-mail", "budget", "policy"),
    *("a", "x", "2024", "leave", "review", "boards", "board", "owl", "it's", "ÉTÉ", ""),
]

texts = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
# One change to the store: (kind, chunk number, new text, new title)
changes = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "delete"]),
        st.integers(min_value=0, max_value=7),
        texts,
        st.sampled_from(["Guide", "Café policy", None, "The Boards"]),
    ),
    min_size=1,
    max_size=12,
)


def index_tables(conn: duckdb.DuckDBPyConnection) -> tuple[list, list]:
    schema = LAYOUT.keyword_schema
    docs = conn.execute(
        f"select chunk_id, chunk_hash, content_hash, len from {schema}.docs order by all"
    ).fetchall()
    terms = conn.execute(f"select * from {schema}.terms order by all").fetchall()
    return docs, terms


def apply(conn: duckdb.DuckDBPyConnection, kind: str, number: int, text: str, title) -> None:
    chunk_id = f"d{number % 3}:{number}"
    conn.execute("delete from retrieval_store where chunk_id = $id", {"id": chunk_id})
    if kind == "upsert":
        # A new text is a new chunk_hash, as a build makes it; the title is the document's;
        # the row is stamped when written, as retrieval_store stamps it.
        conn.execute(
            "insert into retrieval_store by name select $id as chunk_id, $doc as doc_id, "
            "now() at time zone 'UTC' as stored_at, "
            "$number as chunk_index, $title as title, '' as heading_path, $text as chunk_text, "
            "0 as token_count, timestamp '2026-01-01' as doc_updated_at, "
            "md5($text || coalesce($title, '')) as chunk_hash, "
            "md5(coalesce($title, '')) as content_hash, '{}'::json as metadata, "
            f"$model as model_id, [1, 0, 0, 0]::float[{DIMENSION}] as embedding",
            {
                "id": chunk_id,
                "doc": f"d{number % 3}",
                "number": number,
                "title": title,
                "text": text,
                "model": MODEL_ID,
            },
        )


def fresh_copy(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new database holding the same retrieval_store rows and no index yet."""
    fresh = duckdb.connect()
    load_extension(fresh, "fts")
    fresh.register("rows", conn.execute("select * from retrieval_store").arrow())
    fresh.execute("create table retrieval_store as select * from rows")
    fresh.unregister("rows")
    return fresh


@settings(
    derandomize=True,
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(history=st.lists(changes, min_size=1, max_size=3))
def test_the_incremental_index_equals_a_fresh_one_and_duckdbs_bm25(history):
    with make_store([], DIMENSION, MODEL_ID) as conn:
        for batch in history:
            for change in batch:
                apply(conn, *change)
            for statement in keyword_index_sql(LAYOUT):
                conn.execute(statement)

        with fresh_copy(conn) as fresh:
            for statement in keyword_index_sql(LAYOUT):
                fresh.execute(statement)
            assert index_tables(conn) == index_tables(fresh)

        if conn.execute("select count(*) from retrieval_store").fetchone() == (0,):
            return
        match_bm25 = duckdb_bm25_index(conn)
        for question in ("running salary", "café boards", "e-mail policy it's", "the"):
            got = conn.execute(
                "select chunk_id, score from search_keyword($q, k := 50)", {"q": question}
            ).fetchall()
            reference = conn.execute(
                f"select chunk_id, score from (select chunk_id, {match_bm25}(chunk_id, $q) "
                "as score from retrieval_store) where score is not null "
                "order by score desc, chunk_id",
                {"q": question},
            ).fetchall()
            assert [(chunk_id, pytest.approx(score, rel=1e-12)) for chunk_id, score in got] == (
                reference
            )


def test_only_new_or_changed_chunks_are_tokenized():
    rows = [
        {
            "chunk_id": f"d{i}:0",
            "doc_id": f"d{i}",
            "chunk_text": f"owl {i}",
            "embedding": [1, 0, 0, 0],
        }
        for i in range(3)
    ]
    with make_store(rows, DIMENSION, MODEL_ID) as conn:
        schema = LAYOUT.keyword_schema
        conn.execute(f"update {schema}.docs set indexed_at = '2000-01-01'")
        conn.execute(
            "update retrieval_store set chunk_text = 'heron', chunk_hash = 'new' "
            "where chunk_id = 'd1:0'"
        )
        conn.execute("delete from retrieval_store where chunk_id = 'd2:0'")
        for statement in keyword_index_sql(LAYOUT):
            conn.execute(statement)
        indexed = conn.execute(
            f"select chunk_id, indexed_at = '2000-01-01' from {schema}.docs order by chunk_id"
        ).fetchall()
        assert indexed == [("d0:0", True), ("d1:0", False)]
        hits = conn.execute("select chunk_id from search_keyword('heron owl')").fetchall()
        assert hits == [("d0:0",), ("d1:0",)] or hits == [("d1:0",), ("d0:0",)]
