"""The bundled sample corpus, built the way `make demo` builds it, delivery by delivery."""

from __future__ import annotations

import csv

import pytest
from conftest import REPO, DbtProject
from test_e2e_pipeline import search_json

from rag_store.search import search_text

# One worker builds this module's shared store once (pytest-xdist, --dist loadgroup).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_e2e_sample_corpus")]

FEED = sorted((REPO / "data" / "sample_feed").glob("*.jsonl"))
GOLDEN = list(csv.DictReader((REPO / "seeds" / "golden_queries.csv").open(encoding="utf-8")))


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    project = DbtProject(tmp_path_factory.mktemp("sample"))
    project.deliver(FEED[0])
    first = project.build()
    chunks_before = dict(project.query("select chunk_id, chunk_hash from retrieval_store"))
    project.deliver(*FEED[1:])
    second = project.build()
    return project, first, second, chunks_before


def test_the_feed_has_an_update_and_a_delete():
    assert len(FEED) >= 2
    assert len(GOLDEN) >= 10


def test_demo_question_returns_the_right_document_first(sample_store):
    project = sample_store[0]
    question = GOLDEN[0]
    hits = search_json(project, question["query_text"])
    assert hits[0]["doc_id"] == question["expected_doc_id"]


def test_golden_questions_find_their_documents(sample_store):
    project = sample_store[0]
    first_hits = []
    for question in GOLDEN:
        hits = search_text(project.db, question["query_text"], k=5)
        docs = [hit.doc_id for hit in hits]
        assert question["expected_doc_id"] in docs, (question, docs)
        first_hits.append(docs[0] == question["expected_doc_id"])
    assert sum(first_hits) >= len(GOLDEN) - 2


def test_second_delivery_is_applied_exactly(sample_store):
    project, first, second, before = sample_store
    after = dict(project.query("select chunk_id, chunk_hash from retrieval_store"))
    deleted = project.query(
        "select doc_id from int_documents__latest where is_deleted order by doc_id"
    )
    assert deleted, "the second delivery holds a tombstone"
    for (doc_id,) in deleted:
        assert not [c for c in after if c.startswith(doc_id + ":")]
    # Unchanged documents keep every chunk; the edit re-embeds only a few chunks.
    changed_docs = {c.split(":")[0] for c in set(after) ^ set(before)} | {
        c.split(":")[0] for c in after if c in before and after[c] != before[c]
    }
    assert len(changed_docs) <= 4
    assert 0 < second.embedded < first.embedded / 5
