"""Incremental builds recompute exactly what changed. Real dbt, real DuckDB, real model.

Each scenario delivers feed files batch by batch and asserts the tables and the number of
chunks the build embedded (from the build log and from embedding_runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import duckdb
import pytest
from conftest import HASH_EMBEDDER, DbtProject, document, long_body, write_feed

pytestmark = pytest.mark.e2e

LATER = "2026-06-01T00:00:00Z"


def chunk_hashes(project: DbtProject, doc_id: str | None = None) -> dict[str, str]:
    where = f"where doc_id = '{doc_id}'" if doc_id else ""
    return dict(project.query(f"select chunk_id, chunk_hash from retrieval_store {where}"))


def last_run(project: DbtProject) -> tuple[int, int, int]:
    return project.query(
        "select chunks_embedded, chunks_reused, chunks_failed "
        "from embedding_runs order by started_at desc limit 1"
    )[0]


def test_edit_reembeds_only_the_changed_section_and_shrink_drops_tail_chunks(dbt_project):
    write_feed(dbt_project, "1.jsonl", [document("guide", long_body(8))])
    first = dbt_project.build()
    before = chunk_hashes(dbt_project)
    assert len(before) == 8 and first.embedded == 8

    write_feed(
        dbt_project,
        "2.jsonl",
        [document("guide", long_body(8, "Edited."), updated_at="2026-06-01T00:00:00Z")],
    )
    second = dbt_project.build()
    after = chunk_hashes(dbt_project)
    assert second.embedded == 1
    assert [c for c in after if after[c] != before[c]] == ["guide:2"]
    assert last_run(dbt_project) == (1, 7, 0)

    write_feed(
        dbt_project,
        "3.jsonl",
        [document("guide", long_body(3, "Edited."), updated_at="2026-07-01T00:00:00Z")],
    )
    third = dbt_project.build()
    assert third.embedded == 0  # the three remaining sections were all embedded before
    assert sorted(chunk_hashes(dbt_project)) == ["guide:0", "guide:1", "guide:2"]
    assert dbt_project.query("select count(*) from int_document_chunks") == [(3,)]


def test_tombstone_removes_chunks_and_reinsert_brings_them_back(dbt_project):
    body = long_body(2)
    write_feed(dbt_project, "1.jsonl", [document("a", body), document("b", "Other text.")])
    dbt_project.build()
    write_feed(
        dbt_project,
        "2.jsonl",
        [document("a", "", is_deleted=True, updated_at="2026-06-01T00:00:00Z")],
    )
    dbt_project.build()
    assert chunk_hashes(dbt_project, "a") == {}
    assert dbt_project.query("select count(*) from int_document_chunks where doc_id = 'a'") == [
        (0,)
    ]
    write_feed(
        dbt_project,
        "3.jsonl",
        [document("a", body, updated_at="2026-07-01T00:00:00Z", _loaded_at="2026-07-02T00:00:00Z")],
    )
    back = dbt_project.build()
    assert len(chunk_hashes(dbt_project, "a")) == 2
    assert back.embedded == 0  # the vectors were still in the cache


def test_late_rows_never_overwrite_newer_versions_and_old_new_docs_are_picked_up(dbt_project):
    write_feed(
        dbt_project,
        "1.jsonl",
        [document("a", "Current text.", updated_at="2026-05-01T00:00:00Z")],
    )
    dbt_project.build()
    write_feed(
        dbt_project,
        "2.jsonl",
        [
            # older version of a, delivered later
            document(
                "a",
                "Stale text.",
                updated_at="2026-01-01T00:00:00Z",
                _loaded_at="2026-06-01T00:00:00Z",
            ),
            # a new document whose updated_at is older than anything seen so far
            document(
                "b",
                "Archived text.",
                updated_at="2020-01-01T00:00:00Z",
                _loaded_at="2026-06-01T00:00:00Z",
            ),
        ],
    )
    result = dbt_project.build()
    texts = dict(dbt_project.query("select doc_id, chunk_text from retrieval_store"))
    assert texts == {"a": "Current text.", "b": "Archived text."}
    assert result.embedded == 1


def test_rows_older_than_the_lookback_wait_for_a_full_refresh(dbt_project):
    write_feed(dbt_project, "1.jsonl", [document("a", "First.", _loaded_at="2026-06-10T00:00:00Z")])
    dbt_project.build()
    # Loaded 3 days before the checkpoint: outside the default 24 h lookback.
    write_feed(
        dbt_project, "2.jsonl", [document("b", "Late file.", _loaded_at="2026-06-07T00:00:00Z")]
    )
    dbt_project.build()
    assert set(chunk_hashes(dbt_project)) == {"a:0"}
    dbt_project.build(vars={"loaded_at_lookback_hours": 24 * 7})
    assert set(chunk_hashes(dbt_project)) == {"a:0", "b:0"}


def test_duplicate_delivery_is_a_noop_and_boilerplate_is_embedded_once(dbt_project):
    footer = "## Support\n\nQuestions go to the help desk, extension 4242."
    rows = [
        document("notes/one", "Alpha release.\n\n" + footer, title="Release notes"),
        document("notes/two", "Beta release.\n\n" + footer, title="Release notes"),
    ]
    write_feed(dbt_project, "1.jsonl", rows)
    first = dbt_project.build()
    assert dbt_project.query("select count(*) from retrieval_store") == [(4,)]
    assert first.embedded == 3  # the shared footer (same title and heading) once
    checksum = dbt_project.checksum()
    write_feed(dbt_project, "1-again.jsonl", rows)
    again = dbt_project.build()
    assert again.embedded == 0
    assert dbt_project.checksum() == checksum


def test_boilerplate_under_different_titles_shares_a_vector_without_headers(dbt_project):
    footer = "Questions go to the help desk, extension 4242."
    write_feed(
        dbt_project,
        "1.jsonl",
        [document("x", footer, title="Payroll"), document("y", footer, title="Parking")],
    )
    result = dbt_project.build(vars={"chunk_context_header": False})
    assert result.embedded == 1
    assert dbt_project.query("select count(distinct chunk_hash) from retrieval_store") == [(1,)]


def test_chunker_settings_change_rechunks_every_document(dbt_project):
    write_feed(dbt_project, "1.jsonl", [document("a", long_body(2, words_per_section=150))])
    dbt_project.build()
    assert dbt_project.query("select count(*) from retrieval_store") == [(2,)]
    result = dbt_project.build(vars={"max_chunk_tokens": 64, "chunk_overlap_tokens": 8})
    count, max_tokens = dbt_project.query("select count(*), max(token_count) from retrieval_store")[
        0
    ]
    assert count > 4 and max_tokens <= 64
    assert result.embedded == count
    fingerprints = dbt_project.query(
        "select count(distinct chunker_fingerprint) from int_document_chunks"
    )
    assert fingerprints == [(1,)]


def test_model_switch_is_all_or_nothing_and_prunes_unless_kept(dbt_project):
    write_feed(dbt_project, "1.jsonl", [document("a", long_body(3)), document("b", "Short.")])
    dbt_project.vars = dict(HASH_EMBEDDER)
    dbt_project.build()
    (old_model,) = dbt_project.query("select distinct model_id from retrieval_store")[0]

    switched = dbt_project.build(
        vars={"embedding_model": "hash-2:all-MiniLM-L6-v2", "keep_previous_model_embeddings": True}
    )
    assert switched.embedded == 4
    (models,) = dbt_project.query("select list(distinct model_id) from retrieval_store")[0]
    assert len(models) == 1 and models[0] != old_model
    assert dbt_project.query("select count(distinct model_id) from chunk_embeddings") == [(2,)]

    rollback = dbt_project.build()  # back to the first model: its vectors were kept
    assert rollback.embedded == 0
    assert dbt_project.query("select distinct model_id from retrieval_store") == [(old_model,)]
    assert dbt_project.query("select list(distinct model_id) from chunk_embeddings") == [
        ([old_model],)
    ]


def test_real_model_switch_reembeds_everything(dbt_project, tmp_path, default_info):
    write_feed(dbt_project, "1.jsonl", [document("a", long_body(2)), document("b", "Short.")])
    dbt_project.build()
    copy = tmp_path / "minilm-copy"
    shutil.copytree(default_info.path, copy)
    switched = dbt_project.build(vars={"embedding_model": str(copy)})
    assert switched.embedded == 3
    (model_id,) = dbt_project.query("select distinct model_id from retrieval_store")[0]
    assert model_id.startswith("minilm-copy@")
    assert dbt_project.query("select distinct model_id from chunk_embeddings") == [(model_id,)]


def test_wrong_dimension_var_fails_with_the_right_value(dbt_project):
    write_feed(dbt_project, "1.jsonl", [document("a", "Text.")])
    result = dbt_project.build(vars={"embedding_dimension": 512}, check=False)
    assert result.returncode != 0
    assert "embedding_dimension: 384" in result.output


def test_full_refresh_equals_incremental_history(dbt_project):
    write_feed(dbt_project, "1.jsonl", [document("a", long_body(3)), document("b", "One.")])
    dbt_project.build()
    write_feed(
        dbt_project,
        "2.jsonl",
        [
            document("a", long_body(4, "Changed."), updated_at="2026-06-01T00:00:00Z"),
            document("b", "", is_deleted=True, updated_at="2026-06-01T00:00:00Z"),
            document("c", "Newcomer.", updated_at="2026-06-01T00:00:00Z"),
        ],
    )
    dbt_project.build()
    # When each row was written is the one column a full refresh changes by design.
    comparable = "(select * exclude (stored_at) from retrieval_store)"
    incremental = dbt_project.checksum(comparable)
    refreshed = dbt_project.dbt("build", "--full-refresh")
    assert refreshed.embedded == 0  # the embedding cache survives --full-refresh
    assert dbt_project.checksum(comparable) == incremental


def test_document_directory_source(dbt_project):
    docs = dbt_project.root / "docs"
    (docs / "team").mkdir(parents=True)
    (docs / "team" / "handbook.md").write_text("# Handbook\n\nWe meet on Mondays.\n")
    (docs / "faq.txt").write_text("Lunch is at noon.\n")
    (docs / "ignored.pdf").write_bytes(b"%PDF")
    dbt_project.vars = {"document_feed": "", "document_dir": str(docs)}
    dbt_project.build()
    rows = dbt_project.query(
        "select doc_id, title, source_kind from int_documents__latest order by doc_id"
    )
    assert rows == [("faq.txt", "faq", "directory"), ("team/handbook.md", "Handbook", "directory")]
    stamps = "select doc_id, changed_at from int_documents__latest order by doc_id"
    first = dict(dbt_project.query(stamps))

    time.sleep(1.1)  # modification times have one-second resolution
    (docs / "faq.txt").write_text("Lunch is at half past twelve.\n")
    edited = dbt_project.build()
    assert edited.embedded == 1
    # The directory is read whole on every build; only the edited document is stamped as
    # changed, so the store compares that one alone.
    second = dict(dbt_project.query(stamps))
    assert second["team/handbook.md"] == first["team/handbook.md"]
    assert second["faq.txt"] > first["faq.txt"]
    assert (
        "half past twelve"
        in dict(dbt_project.query("select doc_id, chunk_text from retrieval_store"))["faq.txt"]
    )

    os.remove(docs / "faq.txt")
    dbt_project.build()
    assert set(chunk_hashes(dbt_project)) == {"team/handbook.md:0"}
    assert dbt_project.query(
        "select is_deleted from int_documents__latest where doc_id = 'faq.txt'"
    ) == [(True,)]


def keyword_top(project: DbtProject, question: str) -> list[str]:
    arguments = json.dumps({"query": question, "k": 3, "mode": "keyword"})
    output = project.dbt("run-operation", "search", "--args", arguments).output
    return [line.split()[3] for line in output.splitlines() if re.search(r"\s\d+\. ", line)]


def stored_at(project: DbtProject) -> dict[str, tuple]:
    """chunk_id -> (when retrieval_store wrote the row, when the keyword index indexed it)."""
    rows = project.query(
        "select store.chunk_id, store.stored_at, keywords.indexed_at from retrieval_store store "
        "join main_retrieval_store_keywords.docs keywords using (chunk_id)"
    )
    return {chunk_id: (stored, indexed) for chunk_id, stored, indexed in rows}


def test_a_build_rewrites_and_reindexes_only_the_documents_that_changed(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(
        dbt_project,
        "1.jsonl",
        [
            document("a", "Whales sing."),
            document("b", "Owls hoot."),
            document("c", long_body(3)),
            document("untouched", "Otters swim."),
        ],
    )
    dbt_project.build()
    first = stored_at(dbt_project)
    dbt_project.build()
    assert stored_at(dbt_project) == first  # a no-op writes no row and indexes no chunk
    assert keyword_top(dbt_project, "owls") == ["b"]

    write_feed(
        dbt_project,
        "2.jsonl",
        [
            document("b", "Owls hoot and herons wade.", updated_at=LATER),
            document("a", "", is_deleted=True, updated_at=LATER),
            # metadata and access only: the same text, so no re-embedding, but new rows
            document("c", long_body(3), updated_at=LATER, allowed_principals=["ops"]),
        ],
    )
    changed = dbt_project.build()
    assert changed.embedded == 1
    after = stored_at(dbt_project)
    assert set(after) == {"b:0", "c:0", "c:1", "c:2", "untouched:0"}
    assert after["untouched:0"] == first["untouched:0"]
    # The change build compared the three documents it was delivered, not the whole store.
    compiled_sql = dbt_project.root / "target/compiled/rag_store/models/marts/retrieval_store.sql"
    compiled = compiled_sql.read_text()
    assert "'b'" in compiled and "'a'" in compiled and "'untouched'" not in compiled
    assert after["b:0"][0] > first["b:0"][0] and after["b:0"][1] > first["b:0"][1]
    # c's rows were rewritten (new access list) but its text, hence its index, is unchanged
    assert all(
        after[c][0] > first[c][0] and after[c][1] == first[c][1] for c in after if c[0] == "c"
    )
    assert keyword_top(dbt_project, "herons") == ["b"]
    assert keyword_top(dbt_project, "whales") == []
    assert dbt_project.query(
        "select distinct allowed_principals from retrieval_store where doc_id = 'c'"
    ) == [(["ops"],)]

    # A row changed behind dbt's back is outside every change build's comparison; a build
    # with compare_whole_store compares every document and repairs it.
    with duckdb.connect(str(dbt_project.db)) as conn:
        conn.execute("update retrieval_store set title = 'tampered' where doc_id = 'untouched'")
    dbt_project.build()
    tampered = "select title from retrieval_store where doc_id = 'untouched'"
    assert dbt_project.query(tampered) == [("tampered",)]
    dbt_project.build(vars={**HASH_EMBEDDER, "compare_whole_store": True})
    assert dbt_project.query(tampered) == [("Untouched",)]


def test_feed_files_are_parsed_once_and_again_only_when_rewritten(dbt_project):
    """Staging reads a feed file again only when its fingerprint (size, modification time in
    ns, inode) changed. A file edited behind an unchanged fingerprint is therefore not parsed
    again, which is how this test sees that it was not."""
    dbt_project.vars = dict(HASH_EMBEDDER)

    def texts() -> dict[str, str]:
        return dict(dbt_project.query("select doc_id, chunk_text from retrieval_store"))

    first = write_feed(
        dbt_project, "1.jsonl", [document("a", "Whales sing."), document("b", "Owls hoot.")]
    )
    dbt_project.build()

    # Same size, same inode, modification time put back: not parsed again.
    seen = first.stat()
    first.write_text(first.read_text().replace("Whales sing.", "Whales SANG."))
    os.utime(first, ns=(seen.st_atime_ns, seen.st_mtime_ns))
    second = write_feed(dbt_project, "2.jsonl", [document("c", "Herons wade.")])
    dbt_project.build()
    assert texts() == {"a": "Whales sing.", "b": "Owls hoot.", "c": "Herons wade."}

    # Replaced by a rename with the same size and time: another inode, so read again.
    seen = second.stat()
    replacement = write_feed(
        dbt_project,
        "2.jsonl.part",
        [document("c", "Herons WADE.", updated_at=LATER, _loaded_at=LATER)],
    )
    assert replacement.stat().st_size == seen.st_size
    os.utime(replacement, ns=(seen.st_atime_ns, seen.st_mtime_ns))
    os.replace(replacement, second)
    # A later file's version that conflicts with a staged one: the earlier delivery stands.
    write_feed(dbt_project, "3.jsonl", [document("b", "Owls HOOT.", _loaded_at=LATER)])
    dbt_project.build()
    assert texts() == {"a": "Whales sing.", "b": "Owls hoot.", "c": "Herons WADE."}
    assert dbt_project.query(
        "select doc_id, parse_filename(source_file) from documents_rejected"
    ) == [("b", "3.jsonl")]

    # A file that is gone leaves staging; its documents stay (a feed is a history).
    first.unlink()
    dbt_project.build()
    staged = dbt_project.query(
        "select distinct parse_filename(source_file) from stg_docs__document_changes order by 1"
    )
    assert staged == [("2.jsonl",), ("3.jsonl",)]
    assert texts() == {"a": "Whales sing.", "b": "Owls hoot.", "c": "Herons WADE."}
