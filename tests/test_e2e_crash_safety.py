"""SIGKILL a real `dbt build` at chosen points; the next build must complete and give the
same retrieval_store as a build that was never interrupted."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from conftest import HASH_EMBEDDER, REPO, DbtProject, document, long_body, write_feed

# One worker builds this module's shared store once (pytest-xdist, --dist loadgroup).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_e2e_crash_safety")]

SAMPLE = REPO / "data" / "sample_feed" / "2026-10-01_initial.jsonl"


def kill_when(process: subprocess.Popen, marker: str, timeout: float = 600) -> str:
    """SIGKILL `process` as soon as a line containing `marker` appears; return the output."""
    seen = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            process.kill()
            break
        assert time.monotonic() < deadline, "marker never appeared"
    process.wait()
    assert process.returncode != 0, f"the build finished before {marker!r}:\n{''.join(seen)}"
    return "".join(seen)


def store_rows(project: DbtProject):
    """retrieval_store's rows, but for when a vector was computed and a row written (clock
    times that differ by design), and its vectors."""
    rows = project.query(
        "select * exclude (embedded_at, stored_at, embedding), embedding::float[] "
        "from retrieval_store order by chunk_id"
    )
    return [row[:-1] for row in rows], np.array([row[-1] for row in rows], dtype=np.float32)


def assert_same_store(project: DbtProject, reference: DbtProject) -> None:
    rows, vectors = store_rows(project)
    expected_rows, expected_vectors = store_rows(reference)
    assert rows == expected_rows
    # Vectors computed in different batches may differ in the last float bits.
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-5)


@pytest.fixture(scope="module")
def sample_subset(tmp_path_factory):
    """The first 15 documents of the sample corpus (about 150 chunks) as a feed file."""
    path = tmp_path_factory.mktemp("subset") / "subset.jsonl"
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:15]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_kill_mid_embedding_then_rebuild_reuses_vectors(tmp_path, sample_subset):
    clean = DbtProject(tmp_path / "clean")
    clean.deliver(sample_subset)
    clean_build = clean.build()

    crashed = DbtProject(tmp_path / "crashed")
    crashed.deliver(sample_subset)
    output = kill_when(crashed.start_dbt("build"), "vectors saved")
    saved, total = output.split("checkpoint ")[-1].split(" ")[0].split("/")
    assert 0 < int(saved) < int(total)

    rebuilt = crashed.build()
    reused = int(rebuilt.output.split("reusing ")[1].split(" ")[0])
    assert reused >= int(saved)
    assert rebuilt.embedded == clean_build.embedded - reused
    assert_same_store(crashed, clean)
    in_flight = crashed.query(
        "select count(*) from information_schema.tables "
        "where table_name = 'chunk_embeddings__in_flight'"
    )
    assert in_flight == [(0,)]


BATCHES = [
    [document("a", long_body(4)), document("b", long_body(2)), document("c", "Short.")],
    [
        document("a", long_body(5, "Edited."), updated_at="2026-06-01T00:00:00Z"),
        document("c", "", is_deleted=True, updated_at="2026-06-01T00:00:00Z"),
        document("d", long_body(3), updated_at="2026-06-01T00:00:00Z"),
    ],
]


@pytest.fixture(scope="module")
def never_interrupted(tmp_path_factory):
    """BATCHES built one build each, never interrupted: what every repaired store must equal
    (read only, so built once for every kill point)."""
    clean = DbtProject(tmp_path_factory.mktemp("clean"), dict(HASH_EMBEDDER))
    for number, batch in enumerate(BATCHES, start=1):
        write_feed(clean, f"{number}.jsonl", batch)
        clean.build()
    return clean


@pytest.mark.parametrize(
    "marker",
    [
        "START sql incremental model main.int_documents__latest",
        "START sql incremental model main.int_document_chunks",
        "START python incremental model main.chunk_embeddings",
        "START sql incremental model main.retrieval_store",
        "OK created sql incremental model main.retrieval_store",
    ],
)
def test_kill_during_any_step_leaves_a_store_the_next_build_repairs(
    tmp_path, marker, never_interrupted
):
    crashed = DbtProject(tmp_path / "crashed", dict(HASH_EMBEDDER))
    write_feed(crashed, "1.jsonl", BATCHES[0])
    crashed.build()
    write_feed(crashed, "2.jsonl", BATCHES[1])

    kill_when(crashed.start_dbt("build"), marker)
    crashed.build()
    assert_same_store(crashed, never_interrupted)
