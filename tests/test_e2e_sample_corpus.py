"""The bundled sample corpus, built the way `make demo` builds it, delivery by delivery."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import numpy as np
import psutil
import pytest
from conftest import BIN, REPO, DbtProject
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


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-CPU Ray cluster started with `ray start --head`, stopped after the module.
    Its temp dir is short: Ray's socket paths must fit in 107 bytes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray = str(BIN / "ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [
            *(ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)),
            *("--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false"),
            *("--temp-dir", temp, "--disable-usage-stats"),
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=180,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _embedding_workers() -> list[psutil.Process]:
    """The Ray actor processes embedding a batch right now (Ray names them by the call)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith("ray::Embedder.embed"):
            found.append(process)
    return found


def test_ray_executor_equals_the_local_one_and_survives_a_killed_worker(
    sample_store, ray_cluster, tmp_path
):
    """The sample corpus embedded by actors of a real Ray cluster, one of them SIGKILLed
    mid-embedding: the build still lands green, and every vector matches the local
    executor's (the sample store) within 1e-5."""
    local = sample_store[0]
    project = DbtProject(tmp_path / "on-ray")
    project.deliver(*FEED)
    ray_vars = {
        "embedding_executor": "ray",
        "ray_address": ray_cluster,
        # small batches: the killed worker is caught mid-run, with batches on every side
        "embedding_batch_size": 4,
        "publish_snapshot": False,
    }
    log = tmp_path / "build.log"
    with log.open("w") as out:
        build = subprocess.Popen(
            project.command("build", vars=ray_vars),
            cwd=REPO,
            env=project.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 600
        killed = None
        while killed is None and build.poll() is None and time.monotonic() < deadline:
            workers = _embedding_workers()
            if workers and "checkpoint" in log.read_text():
                killed = workers[0]
                killed.send_signal(signal.SIGKILL)
            time.sleep(0.1)
        build.wait(timeout=600)
    output = log.read_text()
    assert killed is not None, f"no Ray worker was seen embedding:\n{output[-4000:]}"
    assert build.returncode == 0, output[-6000:]
    assert re.search(r"Ray worker \d+ lost", output), output[-4000:]

    query = """
        select chunk_hash, embedding from chunk_embeddings
        where error is null and chunk_hash in (select chunk_hash from int_document_chunks)
        order by chunk_hash
    """
    on_ray = project.query(query)
    at_home = dict(local.query(query))
    assert [hash_ for hash_, _ in on_ray] == sorted(at_home)
    ray_vectors = np.array([vector for _, vector in on_ray], dtype=np.float32)
    local_vectors = np.array([at_home[hash_] for hash_, _ in on_ray], dtype=np.float32)
    assert np.abs(ray_vectors - local_vectors).max() <= 1e-5
    assert project.checksum() != "" and project.query(
        "select count(*) from retrieval_store"
    ) == local.query("select count(*) from retrieval_store")
