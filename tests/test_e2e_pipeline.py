"""End to end: real `dbt build`, real DuckDB files, the real embedding model.

One small fixture feed (5 documents, then a change batch) drives every assertion here.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import FIXTURES, DbtProject

# One worker builds this module's shared store once (pytest-xdist, --dist loadgroup).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_e2e_pipeline")]

BATCH_1 = FIXTURES / "small_feed" / "batch_1.jsonl"
BATCH_2 = FIXTURES / "small_feed_changes" / "batch_2.jsonl"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[DbtProject, object]:
    """A store built once from batch 1; tests that change it copy it first."""
    project = DbtProject(tmp_path_factory.mktemp("store"))
    project.deliver(BATCH_1)
    result = project.build()
    return project, result


def copy_project(source: DbtProject, tmp_path) -> DbtProject:
    clone = DbtProject(tmp_path / "clone")
    shutil.copytree(source.root, clone.root, ignore=shutil.ignore_patterns("target", "logs"))
    return clone


def test_first_build_fills_every_table(built):
    project, result = built
    assert result.embedded == project.query("select count(*) from chunk_embeddings")[0][0]
    live = project.query("select count(*) from int_documents__latest where not is_deleted")
    assert live == [(5,)]
    docs, chunks, unique_ids = project.query(
        "select count(distinct doc_id), count(*), count(distinct chunk_id) from retrieval_store"
    )[0]
    assert docs == 5
    assert chunks == unique_ids > 5
    ids_ok = project.query(
        "select bool_and(chunk_id = doc_id || ':' || chunk_index) from retrieval_store"
    )
    assert ids_ok == [(True,)]
    (dims, min_norm, max_norm, max_tokens) = project.query(
        "select min(len(embedding::float[])), "
        "min(sqrt(list_sum(list_transform(embedding::float[], x -> x * x)))), "
        "max(sqrt(list_sum(list_transform(embedding::float[], x -> x * x)))), "
        "max(token_count) from retrieval_store"
    )[0]
    assert dims == 384
    assert abs(min_norm - 1) < 1e-3 and abs(max_norm - 1) < 1e-3
    assert max_tokens <= 254
    (column_type,) = project.query(
        "select data_type from information_schema.columns "
        "where table_name = 'retrieval_store' and column_name = 'embedding'"
    )[0]
    assert column_type == "FLOAT[384]"


def test_second_build_embeds_nothing_and_changes_nothing(built, tmp_path):
    project = copy_project(built[0], tmp_path)
    before = project.checksum()
    embeddings_before = project.checksum("chunk_embeddings order by chunk_hash, model_id --")
    result = project.build()
    assert result.embedded == 0
    assert "embedding:" not in result.output  # no progress bar: the model was never loaded
    assert project.checksum() == before
    assert project.checksum("chunk_embeddings order by chunk_hash, model_id --") == (
        embeddings_before
    )


def test_the_right_document_comes_first(built):
    project, _ = built
    hits = search_json(project, "my sourdough culture has grey liquid on top, what now?")
    assert hits[0]["doc_id"] == "kitchen/sourdough"
    assert hits == sorted(hits, key=lambda h: (-h["score"], h["chunk_id"]))


def test_change_batch_updates_deletes_and_ignores_late_rows(built, tmp_path):
    project = copy_project(built[0], tmp_path)
    before = dict(project.query("select chunk_id, chunk_hash from retrieval_store"))
    project.deliver(BATCH_2)
    result = project.build()
    after = dict(project.query("select chunk_id, chunk_hash from retrieval_store"))

    # Delete: every chunk of the tombstoned document is gone in the same build.
    assert not [c for c in after if c.startswith("home/smoke-alarms:")]
    # Late row: the older version delivered later did not replace the newer one.
    (body,) = project.query(
        "select body from int_documents__latest where doc_id = 'kitchen/sourdough'"
    )[0]
    assert "outdated draft" not in body
    kept = {c: h for c, h in before.items() if c.startswith("kitchen/sourdough:")}
    assert kept and all(after[c] == h for c, h in kept.items())
    # Edit: only the changed section of the edited document was re-embedded, plus the
    # new document's chunks.
    changed = [c for c in after if c in before and after[c] != before[c]]
    assert changed == ["bikes/chain-care:1"]
    new = [c for c in after if c not in before]
    assert new and all(c.startswith("garden/compost:") for c in new)
    assert result.embedded == len(changed) + len(new)


def test_run_operation_search_prints_ranked_hits(built):
    project, _ = built
    result = project.dbt(
        "run-operation", "search", "--args", json.dumps({"query": "bike chain wear", "k": 2})
    )
    lines = [line for line in result.output.splitlines() if "bikes/chain-care" in line]
    assert lines and " 1. " in lines[0]


@pytest.mark.parametrize(
    ("mode", "question", "expected"),
    [
        ("keyword", "smoke alarm battery", "home/smoke-alarms"),
        ("hybrid", "sleeper berth", "travel/night-trains"),
    ],
)
def test_run_operation_keyword_and_hybrid_modes(built, mode, question, expected):
    project, _ = built
    arguments = json.dumps({"query": question, "k": 2, "mode": mode})
    result = project.dbt("run-operation", "search", "--args", arguments)
    ranked = [line for line in result.output.splitlines() if " 1. " in line]
    assert ranked and f"  {expected}  " in ranked[0]


def test_vector_search_macro_with_a_stored_vector_finds_that_chunk(built):
    project, _ = built
    chunk_id, vector = project.query(
        "select chunk_id, embedding::float[] from retrieval_store order by chunk_id limit 1"
    )[0]
    result = project.dbt(
        "run-operation", "search", "--args", json.dumps({"query": list(vector), "k": 1})
    )
    assert f"1.000  {chunk_id.split(':')[0]}" in result.output


def test_vector_search_macro_rejects_bad_arguments(built):
    project, _ = built
    wrong_size = project.dbt(
        "run-operation", "search", "--args", json.dumps({"query": [0.1, 0.2]}), check=False
    )
    assert wrong_size.returncode != 0
    assert "query vector has 2 dimensions, the store has 384" in wrong_size.output
    bad_k = project.dbt(
        "run-operation", "search", "--args", json.dumps({"query": "x", "k": 0}), check=False
    )
    assert bad_k.returncode != 0
    assert "k must be a positive integer" in bad_k.output
    bad_mode = project.dbt(
        "run-operation",
        "search",
        "--args",
        json.dumps({"query": "x", "mode": "fuzzy"}),
        check=False,
    )
    assert bad_mode.returncode != 0
    assert "mode must be vector, keyword or hybrid" in bad_mode.output


def test_cli_refuses_a_query_model_that_differs_from_the_store(built, tmp_path, default_info):
    project, _ = built
    other = tmp_path / "other-model"
    shutil.copytree(default_info.path, other)
    (other / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    completed = project.rag_store("search", "anything", "--model", str(other))
    assert completed.returncode == 2
    assert "not comparable" in completed.stderr


def search_cli(project: DbtProject, *args: str) -> subprocess.CompletedProcess:
    """`rag-store search` against the project's published snapshot."""
    from rag_store.snapshot import default_snapshot_path

    return project.rag_store(*args, db=default_snapshot_path(project.db))


def search_json(project: DbtProject, question: str, k: int = 5) -> list[dict]:
    completed = project.rag_store("search", question, "--k", str(k), "--json")
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)["hits"]
