"""Access control in the search macros, adversarially: hypothesis draws stores of public and
restricted documents, callers, questions, modes, filters and k, and checks that

- no result ever belongs to a document the caller may not read, and
- a caller's results (ids, order, scores) are those of a store that holds only the
  documents it may read, searched without principals; for vector search, also those of the
  whole store searched unrestricted and filtered afterwards.

So nothing the caller may not read shapes what it gets: not through `k`, filters, keyword
statistics, hybrid ranks or the chunk `similar_chunks` starts from. The stores are written
directly with small raw vectors: the rule is in SQL over rows and vectors, and a real
embedder would add only minutes.
"""

from __future__ import annotations

import json

import duckdb
import pytest
from hand_made_store import duckdb_bm25_index, make_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_store import search

MODEL_ID = "acl-test-model"
DIMENSION = 4
WORDS = ("salary", "leave", "board", "budget", "oncall", "pager", "review", "policy")
PRINCIPALS = ("alice", "bob", "group:hr", "group:eng")
TEAMS = ("hr", "eng")
SETTINGS = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def documents(draw):
    """A list of documents: doc_id, acl (None = public), metadata, chunks (text, vector)."""
    count = draw(st.integers(1, 10))
    docs = []
    for number in range(count):
        acl = draw(
            st.one_of(
                st.none(),
                st.lists(st.sampled_from(PRINCIPALS), max_size=2, unique=True).map(sorted),
            )
        )
        chunks = draw(
            st.lists(
                st.tuples(
                    st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
                    st.lists(st.integers(-3, 3), min_size=DIMENSION, max_size=DIMENSION).filter(
                        any
                    ),
                ),
                min_size=1,
                max_size=3,
            )
        )
        team = draw(st.sampled_from(TEAMS))
        docs.append((f"d{number}", acl, {"team": team, "n": number % 2}, chunks))
    return docs


CALLERS = st.one_of(
    st.none(),
    st.lists(st.sampled_from((*PRINCIPALS, "mallory")), max_size=3, unique=True),
)
FILTERS = st.fixed_dictionaries(
    {},
    optional={
        "doc_id_like": st.sampled_from(("%", "d1%", "d_")),
        "metadata_contains": st.sampled_from(('{"team": "hr"}', '{"n": 1}', "{}")),
    },
)


def may_read(acl, principals) -> bool:
    return acl is None or principals is None or bool(set(acl) & set(principals))


def rows_of(docs, keep_acl: bool = True) -> list[dict]:
    return [
        {
            "chunk_id": f"{doc_id}:{index}",
            "doc_id": doc_id,
            "title": f"Title of {doc_id}",
            "chunk_text": text,
            "metadata": metadata,
            "allowed_principals": acl if keep_acl else None,
            "embedding": vector,
        }
        for doc_id, acl, metadata, chunks in docs
        for index, (text, vector) in enumerate(chunks)
    ]


def run(conn, mode, k, question, vector, filters, principals, chunk_id=None):
    return search.call_search_macro(
        conn,
        mode,
        k,
        query_text=question,
        query_vector=vector,
        model_id=MODEL_ID,
        filters=filters,
        schema="main",
        chunk_id=chunk_id,
        access=search.access_control(conn, "main"),
        principals=principals,
    )


def assert_same_results(got: list[search.Hit], expected: list[search.Hit]) -> None:
    """Same chunks in the same order with the same scores (to rounding: the collection
    statistics of the two stores are computed in different orders)."""
    assert [hit.chunk_id for hit in got] == [hit.chunk_id for hit in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.score == pytest.approx(theirs.score, rel=1e-9, abs=1e-12)


@SETTINGS
@given(
    docs=documents(),
    principals=CALLERS,
    mode=st.sampled_from(("vector", "keyword", "hybrid", "similar")),
    question=st.lists(st.sampled_from((*WORDS, "nothing")), min_size=1, max_size=3).map(" ".join),
    vector=st.lists(st.integers(-3, 3), min_size=DIMENSION, max_size=DIMENSION).filter(any),
    filter_args=FILTERS,
    k=st.integers(1, 40),
    origin=st.integers(0, 100),
)
def test_a_caller_gets_what_a_store_of_its_documents_gives(
    docs, principals, mode, question, vector, filter_args, k, origin
):
    readable = [doc for doc in docs if may_read(doc[1], principals)]
    acl_of = {doc_id: acl for doc_id, acl, _, _ in docs}
    filters = search.Filters(**filter_args)
    chunk_ids = [row["chunk_id"] for row in rows_of(docs)]
    chunk_id = chunk_ids[origin % len(chunk_ids)]
    with (
        make_store(rows_of(docs), DIMENSION, MODEL_ID) as full,
        make_store(rows_of(readable, keep_acl=False), DIMENSION, MODEL_ID) as own,
    ):
        got = run(full, mode, k, question, vector, filters, principals, chunk_id)
        assert all(may_read(acl_of[hit.doc_id], principals) for hit in got)
        if mode == "similar" and not may_read(acl_of[chunk_id.split(":")[0]], principals):
            assert got == []  # an unreadable chunk has no neighbours, not even public ones
            return
        assert_same_results(got, run(own, mode, k, question, vector, filters, None, chunk_id))
        if mode == "vector":
            everything = run(full, "vector", 10_000, None, vector, filters, None)
            afterwards = [hit for hit in everything if may_read(acl_of[hit.doc_id], principals)]
            assert_same_results(got, afterwards[:k])


@settings(SETTINGS, max_examples=20)
@given(docs=documents(), mode=st.sampled_from(("vector", "keyword", "hybrid")))
def test_deny_by_default_shows_a_caller_without_principals_the_public_documents(docs, mode):
    public = [doc for doc in docs if doc[1] is None]
    with (
        make_store(rows_of(docs), DIMENSION, MODEL_ID, deny_by_default=True) as denying,
        make_store(rows_of(public, keep_acl=False), DIMENSION, MODEL_ID) as own,
        make_store(rows_of(docs), DIMENSION, MODEL_ID) as open_store,
    ):
        args = (mode, 40, "salary leave board", [1, 0, 0, 1], search.Filters())
        assert_same_results(run(denying, *args, None), run(own, *args, None))
        # an empty list of principals is "no principal", whatever the store's default
        assert_same_results(run(open_store, *args, []), run(own, *args, None))


def test_without_restricted_documents_keyword_scores_are_duckdbs_bm25():
    """The keyword macro computes BM25 itself (to leave unreadable chunks out of the
    statistics); with nothing restricted it must equal the full-text extension's own
    match_bm25."""
    docs = [
        (
            f"d{i}",
            None,
            {},
            [(" ".join(WORDS[j % len(WORDS)] for j in range(i, i + 2 + i % 4)), [1, 0, 0, 0])],
        )
        for i in range(12)
    ]
    with make_store(rows_of(docs), DIMENSION, MODEL_ID) as conn:
        match_bm25 = duckdb_bm25_index(conn)
        for question in ("salary", "board budget review", "policy nothing"):
            got = run(conn, "keyword", 50, question, None, search.Filters(), ["alice"])
            reference = conn.execute(
                "select chunk_id, score from (select chunk_id, "
                f"{match_bm25}(chunk_id, $q) as score "
                "from retrieval_store) where score is not null "
                "order by score desc, chunk_id",
                {"q": question},
            ).fetchall()
            assert [(hit.chunk_id, pytest.approx(hit.score, rel=1e-12)) for hit in got] == [
                (chunk_id, score) for chunk_id, score in reference
            ]
            assert got  # every question has a word of the corpus


def test_principals_are_data_and_a_wrong_type_is_refused():
    docs = [
        ("d0", ["it's"], {}, [("salary", [1, 0, 0, 0])]),
        ("d1", None, {}, [("salary", [0, 1, 0, 0])]),
    ]
    with make_store(rows_of(docs), DIMENSION, MODEL_ID) as conn:
        hits = run(conn, "keyword", 5, "salary", None, search.Filters(), ["it's"])
        assert {hit.doc_id for hit in hits} == {"d0", "d1"}
        hits = run(conn, "keyword", 5, "salary", None, search.Filters(), ["' or true --"])
        assert {hit.doc_id for hit in hits} == {"d1"}
        with pytest.raises(duckdb.ConversionException):
            conn.execute("select * from search_keyword('salary', principals := 42)").fetchall()


def test_metadata_filter_is_json_containment():
    docs = [
        (
            "a",
            None,
            {"team": "hr", "tags": ["x", "y"], "level": {"n": 2, "m": 1}},
            [("leave", [1, 0, 0, 0])],
        ),
        ("b", None, {"team": "eng", "tags": ["y"]}, [("leave", [1, 0, 0, 0])]),
        ("c", None, {}, [("leave", [1, 0, 0, 0])]),
    ]
    with make_store(rows_of(docs), DIMENSION, MODEL_ID) as conn:

        def docs_for(metadata):
            filters = search.Filters(metadata_contains=metadata)
            return sorted(
                hit.doc_id for hit in run(conn, "keyword", 9, "leave", None, filters, None)
            )

        assert docs_for({"team": "hr"}) == ["a"]
        assert docs_for({"tags": ["y"]}) == ["a", "b"]
        assert docs_for('{"level": {"n": 2}}') == ["a"]
        assert docs_for({}) == ["a", "b", "c"]
        assert docs_for({"team": "sales"}) == []
        hit = run(conn, "keyword", 1, "leave", None, search.Filters(doc_id_like="a"), None)[0]
        assert hit.metadata == {"team": "hr", "tags": ["x", "y"], "level": {"n": 2, "m": 1}}
    for bad in ("[1]", "not json", '"team"'):
        with pytest.raises(search.SearchError, match="metadata filter"):
            search.Filters(metadata_contains=bad)
    assert json.loads(search.Filters(metadata_contains={"b": 1, "a": 2}).metadata_contains) == {
        "a": 2,
        "b": 1,
    }
