"""Bad input is refused loudly and nothing is lost; guards stop dangerous builds.

Real dbt and DuckDB. Most tests use the test-only `hash:` embedder (deterministic
pseudo-vectors, no torch) because they are about rows, not vector quality.
"""

from __future__ import annotations

import json
import os
import time

import duckdb
import pytest
from conftest import HASH_EMBEDDER, DbtProject, document, long_body, write_feed

from rag_store.embedding import HASH_FAILURE_MARKER

pytestmark = pytest.mark.e2e


def rejects(project: DbtProject) -> dict[str, str | None]:
    rows = project.query("select reject_reason, doc_id from documents_rejected")
    return {reason: doc_id for reason, doc_id in rows}


def test_every_reject_reason_lands_in_documents_rejected(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    good = [document("good/one", "Fine text."), document("good/two", "Also fine.")]
    bad = [
        document("", "No id."),
        document("x" * 600, "Long id."),
        document("tab\tid", "Control character in id."),
        document("empty/body", "   "),
        document("huge/body", "y" * 5000),
        document("bad/date", "Text.", updated_at="last tuesday"),
        document("future/date", "Text.", updated_at="2999-01-01T00:00:00Z"),
        document("bad/flag", "Text.", is_deleted="perhaps"),
        document("no/loaded", "Text.", _loaded_at=None),
        document("good/one", "Same timestamp, other text.", _loaded_at="2026-05-03T00:00:00Z"),
    ]
    path = write_feed(dbt_project, "1.jsonl", good + bad)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"doc_id": "broken", "body": \n')  # malformed JSON line
        handle.write("[1, 2, 3]\n")  # JSON but not an object
    (dbt_project.feed_dir / "2.jsonl").write_bytes(b'{"doc_id": "latin1", "body": "caf\xe9"}\n')

    result = dbt_project.build(vars={"max_document_bytes": 1000})
    assert rejects(dbt_project) == {
        "missing_doc_id": None,
        "doc_id_too_long": "x" * 600,
        "doc_id_control_characters": "tab\tid",
        "empty_body": "empty/body",
        "body_too_large": "huge/body",
        "unparseable_updated_at": "bad/date",
        "updated_at_in_future": "future/date",
        "unparseable_is_deleted": "bad/flag",
        "missing_loaded_at": "no/loaded",
        "conflicting_duplicate": "good/one",
        "malformed_json": None,
        "not_a_json_object": None,
        "invalid_utf8": None,
    }
    located = dbt_project.query(
        "select source_file like '%1.jsonl', line_number from documents_rejected "
        "where reject_reason = 'malformed_json'"
    )
    assert located == [(True, 13)]
    texts = dict(dbt_project.query("select doc_id, chunk_text from retrieval_store"))
    assert texts == {"good/one": "Fine text.", "good/two": "Also fine."}
    # The build stays green; the warn-level alert test reports the rejects.
    assert result.returncode == 0
    alert = dbt_project.dbt("test", "--select", "alert_rejected_rows", vars={"alert_tests": True})
    assert "WARN 1 alert_rejected_rows" in alert.output


def test_mass_delete_guard_stops_the_build_and_deletes_nothing(dbt_project):
    docs = dbt_project.root / "docs"
    docs.mkdir()
    for number in range(5):
        (docs / f"doc{number}.md").write_text(f"# Doc {number}\n\nBody {number}.\n")
    dbt_project.vars = {**HASH_EMBEDDER, "document_feed": "", "document_dir": str(docs)}
    dbt_project.build()
    before = dbt_project.checksum()
    for number in range(4):
        os.remove(docs / f"doc{number}.md")

    blocked = dbt_project.build(check=False)
    assert blocked.returncode != 0
    assert "mass-delete guard" in blocked.output
    assert "max_delete_fraction" in blocked.output
    assert dbt_project.checksum() == before

    # An emptied directory is refused before the guard is even asked: nothing delivered.
    os.remove(docs / "doc4.md")
    emptied = dbt_project.build(check=False)
    assert emptied.returncode != 0
    assert "var document_dir" in emptied.output and "delivers nothing" in emptied.output
    assert dbt_project.checksum() == before

    allowed = dbt_project.build(vars={"max_delete_fraction": 1, "allow_empty_sources": True})
    assert allowed.returncode == 0
    assert dbt_project.query("select count(*) from retrieval_store") == [(0,)]


def test_tombstone_guard_has_its_own_looser_threshold(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    names = [f"doc{number}" for number in range(5)]
    write_feed(dbt_project, "1.jsonl", [document(name, f"Body of {name}.") for name in names])
    dbt_project.build()

    def tombstones(*doc_ids, loaded_at):
        return [
            document(doc_id, "", is_deleted=True, updated_at=loaded_at, _loaded_at=loaded_at)
            for doc_id in doc_ids
        ]

    # Two of five (0.4) is over max_delete_fraction (0.2) but within max_tombstone_fraction
    # (0.5): explicit tombstones are not held to the shrinking-source threshold.
    write_feed(dbt_project, "2.jsonl", tombstones("doc0", "doc1", loaded_at="2026-06-01T00:00:00Z"))
    dbt_project.build()
    assert dbt_project.query("select count(distinct doc_id) from retrieval_store") == [(3,)]

    # Two of the remaining three is over 0.5: refused, nothing deleted.
    before = dbt_project.checksum()
    write_feed(dbt_project, "3.jsonl", tombstones("doc2", "doc3", loaded_at="2026-07-01T00:00:00Z"))
    blocked = dbt_project.build(check=False)
    assert blocked.returncode != 0
    assert "would tombstone 2 of 3 live documents" in blocked.output
    assert "max_tombstone_fraction" in blocked.output
    assert dbt_project.checksum() == before

    dbt_project.build(vars={"max_tombstone_fraction": 1})
    assert dbt_project.query("select distinct doc_id from retrieval_store") == [("doc4",)]


def test_embedding_failures_are_recorded_retried_and_reported(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    poisoned = f"This text cannot be embedded {HASH_FAILURE_MARKER}."
    write_feed(dbt_project, "1.jsonl", [document("ok", "Healthy text."), document("bad", poisoned)])
    first = dbt_project.build(check=False)
    assert first.returncode != 0  # a chunk without a vector turns the build red
    assert "1 FAILED and will be retried" in first.output
    assert dbt_project.query("select chunk_id from retrieval_store") == [("ok:0",)]
    assert dbt_project.query(
        "select count(*) from chunk_embeddings where embedding is null and error is not null"
    ) == [(1,)]

    for _ in range(2):
        retry = dbt_project.build(check=False)
        assert retry.embedded == 1  # retried, not forgotten
    runs = dbt_project.query(
        "select chunks_embedded, chunks_failed from embedding_runs order by started_at"
    )
    assert runs == [(1, 1), (0, 1), (0, 1)]
    alert = dbt_project.dbt(
        "test", "--select", "alert_chunk_keeps_failing_to_embed", vars={"alert_tests": True}
    )
    assert "WARN 1 alert_chunk_keeps_failing_to_embed" in alert.output

    time.sleep(0.01)
    write_feed(
        dbt_project,
        "2.jsonl",
        [document("bad", "Fixed text.", updated_at="2026-06-01T00:00:00Z")],
    )
    fixed = dbt_project.build()
    assert fixed.returncode == 0
    assert sorted(dbt_project.query("select chunk_id from retrieval_store")) == [
        ("bad:0",),
        ("ok:0",),
    ]


def test_a_second_writer_fails_fast_and_changes_nothing(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(dbt_project, "1.jsonl", [document("a", "Text.")])
    dbt_project.build()
    before = dbt_project.checksum()
    write_feed(dbt_project, "2.jsonl", [document("b", "More text.")])
    holder = duckdb.connect(str(dbt_project.db))
    try:
        started = time.monotonic()
        blocked = dbt_project.build(check=False)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert blocked.returncode != 0
    assert "another process already has" in blocked.output
    assert elapsed < 60
    assert dbt_project.checksum() == before


NASTY_QUERIES = [
    'it\'s a "quoted" question; drop table retrieval_store; --',
    "back\\slash \\' and ''doubled'' quotes",
    "Grüße aus München — 東京の天気？ 🌧️",
]


def test_query_text_is_text_in_macros_and_cli(dbt_project):
    """Every nasty question against one store (a build per question added nothing)."""
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(dbt_project, "1.jsonl", [document("a", "Text about weather.")])
    dbt_project.build()
    for question in NASTY_QUERIES:
        operation = dbt_project.dbt(
            "run-operation",
            "search",
            "--args",
            json.dumps({"query": question, "k": 1}, ensure_ascii=False),
        )
        assert "a  [-]" in operation.output, question
        cli = dbt_project.rag_store(
            "search", question, "--json", "--model", HASH_EMBEDDER["embedding_model"]
        )
        assert cli.returncode == 0, (question, cli.stderr)
        assert json.loads(cli.stdout)["question"] == question
        assert dbt_project.query("select count(*) from retrieval_store") == [(1,)], question


def test_token_counts_are_rechecked_unless_already_published(dbt_project):
    """The recount test skips only rows whose (chunk_hash, token_count) retrieval_store
    already holds, so a stored count that drifts from its text is still caught."""
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(dbt_project, "1.jsonl", [document("a", long_body(3)), document("b", "Short.")])
    dbt_project.build()
    select = ["--select", "int_document_chunks,test_name:within_model_window"]
    assert dbt_project.dbt("test", *select).returncode == 0

    with duckdb.connect(str(dbt_project.db)) as conn:
        conn.execute(
            "update int_document_chunks set token_count = token_count - 1 where chunk_id = 'a:1'"
        )
    miscounted = dbt_project.dbt("test", *select, check=False)
    assert miscounted.returncode != 0
    assert "within_model_window" in miscounted.output and "Got 1 result" in miscounted.output

    with duckdb.connect(str(dbt_project.db)) as conn:
        conn.execute("update int_document_chunks set token_count = 999 where chunk_id = 'b:0'")
    over_window = dbt_project.dbt("test", *select, check=False)
    assert "Got 2 results" in over_window.output  # a:1 and b:0, each once
