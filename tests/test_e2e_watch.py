"""`rag-store watch` as a real long-running process over real dbt builds.

These tests are about change detection and process control — which source changes start a
build, signals, a kill mid-build, the history and heartbeat — not about vector quality, so
every store uses the test-only `hash:` embedder (deterministic pseudo-vectors, no torch).
They never assert on timings: waits only have generous limits so a broken watcher fails
instead of hanging. One watcher process serves the scenarios of one shared store (few
documents), so the module costs a handful of builds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BIN, HASH_EMBEDDER, REPO, DbtProject, document, long_body, write_feed

from rag_store.watch import read_history, watch_paths

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_e2e_watch")]

WAIT = 300  # seconds: a limit for a broken watcher, never a measurement


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Watch:
    """A `rag-store watch` process on `project` (its vars, database, target and logs)."""

    def __init__(self, project: DbtProject, *extra: str):
        self.project = project
        self.paths = watch_paths(project.db)
        self.process = subprocess.Popen(
            self.command(*extra),
            cwd=REPO,
            env=project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def command(self, *extra: str) -> list[str]:
        project = self.project
        return [
            str(BIN / "rag-store"),
            "watch",
            *project.project_options(),
            *("--db", str(project.db)),
            *("--target-path", str(project.root / "target")),
            *("--log-path", str(project.root / "logs")),
            *("--poll-seconds", "0.3", "--debounce-seconds", "0.3"),
            *extra,
        ]

    def records(self) -> list[dict]:
        return read_history(self.paths.history)

    def wait_for_records(self, count: int) -> list[dict]:
        deadline = time.monotonic() + WAIT
        while len(records := self.records()) < count:
            if self.process.poll() is not None:
                raise AssertionError(f"the watcher exited:\n{self.process.stdout.read()}")
            assert time.monotonic() < deadline, "no cycle recorded"
            time.sleep(0.1)
        return records

    def heartbeat_state(self) -> str | None:
        try:
            return json.loads(self.paths.heartbeat.read_text(encoding="utf-8"))["state"]
        except (OSError, ValueError, KeyError):
            return None

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=WAIT)
        return self.process.returncode, output


def snapshot_doc_ids(project: DbtProject, word: str) -> set[str]:
    """doc_ids whose chunks in the published snapshot contain `word`."""
    snapshot = project.db.with_name("store_snapshot.duckdb")
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        rows = conn.execute(
            "select distinct doc_id from retrieval_store where chunk_text ilike ?",
            [f"%{word}%"],
        ).fetchall()
    return {row[0] for row in rows}


def write_relation(path: Path, bodies: dict[str, str], updated_at: str) -> None:
    rows = sorted(bodies.items())
    table = pa.table(
        {
            "doc_id": [doc_id for doc_id, _ in rows],
            "title": [doc_id.title() for doc_id, _ in rows],
            "body": [body for _, body in rows],
            "updated_at": [updated_at] * len(rows),
        }
    )
    scratch = path.with_name(path.name + ".tmp")
    pq.write_table(table, scratch)
    os.replace(scratch, path)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A store fed by a feed, a directory and a Parquet relation, and a watcher on it that
    has finished its start-up build."""
    project = DbtProject(tmp_path_factory.mktemp("watched"))
    docs = project.root / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nThe orchard lamp is copper.\n", encoding="utf-8")
    relation = project.root / "relation"
    relation.mkdir()
    write_relation(
        relation / "pages.parquet",
        {"pages/alpha": "Alpha page about rivers.", "pages/beta": "Beta page about stones."},
        "2026-05-01 09:00:00",
    )
    write_feed(
        project,
        "a.jsonl",
        [document(f"feed/{n}", f"Feed document {n} about lanterns.") for n in range(4)],
    )
    project.vars = {
        **HASH_EMBEDDER,
        "document_dir": str(docs),
        "document_relation": {"table": f"read_parquet('{relation}/*.parquet')"},
    }
    watcher = Watch(project)
    first = watcher.wait_for_records(1)[0]
    assert first["status"] == "ok", first
    yield project, watcher
    watcher.stop()


def one_more_cycle(watcher: Watch) -> dict:
    """Wait for the next cycle; it must be exactly one, and succeed."""
    before = len(watcher.records())
    record = watcher.wait_for_records(before + 1)[before]
    assert record["status"] == "ok", record
    return record


def test_a_new_feed_file_is_searchable_after_one_cycle(live):
    project, watcher = live
    write_feed(
        project,
        "b.jsonl",
        [document("feed/zephyr", "The zephyrquartz valve.", _loaded_at=now_iso())],
    )
    record = one_more_cycle(watcher)
    assert record["documents_changed"] == 1 and record["chunks_embedded"] == 1
    assert record["lag_seconds"] is not None and record["pid"] == watcher.process.pid
    assert snapshot_doc_ids(project, "zephyrquartz") == {"feed/zephyr"}
    found = project.rag_store(
        "search",
        "zephyrquartz",
        "--mode",
        "keyword",
        "--json",
        db=project.db.with_name("store_snapshot.duckdb"),
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"][0]["doc_id"] == "feed/zephyr"


def test_an_edit_in_document_dir_is_searchable_after_one_cycle(live):
    project, watcher = live
    guide = project.root / "docs" / "guide.md"
    guide.write_text("# Guide\n\nThe orchard lamp is nebulafjord copper.\n", encoding="utf-8")
    record = one_more_cycle(watcher)
    assert record["documents_changed"] == 1
    assert snapshot_doc_ids(project, "nebulafjord") == {"guide.md"}


def test_a_tombstone_removes_the_document_after_one_cycle(live):
    project, watcher = live
    assert snapshot_doc_ids(project, "lanterns") >= {"feed/3"}
    tombstone = document(
        "feed/3",
        "",
        is_deleted=True,
        updated_at="2026-05-03T09:00:00Z",
        _loaded_at=now_iso(),
    )
    write_feed(project, "c.jsonl", [tombstone])
    record = one_more_cycle(watcher)
    assert record["documents_changed"] == 1
    assert "feed/3" not in snapshot_doc_ids(project, "lanterns")


def test_a_relation_change_is_searchable_after_one_cycle(live):
    project, watcher = live
    write_relation(
        project.root / "relation" / "pages.parquet",
        {"pages/alpha": "Alpha page about solsticeharp rivers.", "pages/beta": "Beta page."},
        "2026-05-02 09:00:00",
    )
    record = one_more_cycle(watcher)
    assert record["documents_changed"] == 2
    assert snapshot_doc_ids(project, "solsticeharp") == {"pages/alpha"}


def test_sigterm_during_a_build_lets_it_finish_then_exits_cleanly(live):
    project, watcher = live
    before = len(watcher.records())
    write_feed(
        project, "d.jsonl", [document("feed/late", "A quillwharf note.", _loaded_at=now_iso())]
    )
    deadline = time.monotonic() + WAIT
    while watcher.heartbeat_state() != "building":
        assert time.monotonic() < deadline, "no build started"
        time.sleep(0.02)
    watcher.process.send_signal(signal.SIGTERM)
    output, _ = watcher.process.communicate(timeout=WAIT)
    assert watcher.process.returncode == 0, output
    assert "stopping after this build" in output
    records = watcher.records()
    assert len(records) == before + 1 and records[-1]["status"] == "ok"
    assert snapshot_doc_ids(project, "quillwharf") == {"feed/late"}
    assert watcher.heartbeat_state() == "stopped"


def test_an_idle_poll_does_not_build(live):
    project, watcher = live
    watcher.stop()
    before = len(watcher.records())
    once = subprocess.run(
        watcher.command("--once"), cwd=REPO, env=project.env(), capture_output=True, text=True
    )
    assert once.returncode == 0, once.stderr
    assert once.stdout == "" and len(watcher.records()) == before


def test_alerts_report_a_stopped_watcher(live):
    project, watcher = live
    watcher.stop()
    completed = project.rag_store(
        "alerts", *project.project_options(), "--format", "json", timeout=600
    )
    report = json.loads(completed.stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["watcher_stopped"]["status"] == "warn"
    assert "stopped" in checks["watcher_stopped"]["message"]
    assert checks["watch_lag_seconds"]["observed"] is not None
    assert completed.returncode >= 1


@pytest.mark.xdist_group("test_e2e_watch_kill")
def test_sigkill_mid_build_then_restart_equals_a_clean_build(tmp_path):
    rows = [
        document(f"manual/{n}", long_body(8, marker=f"edition{n}"), _loaded_at=now_iso())
        for n in range(4)
    ]
    settings = {**HASH_EMBEDDER, "embedding_batch_size": 1}
    clean = DbtProject(tmp_path / "clean", vars=settings)
    write_feed(clean, "a.jsonl", rows)
    clean.build()

    crashed = DbtProject(tmp_path / "crashed", vars=settings)
    write_feed(crashed, "a.jsonl", rows)
    watcher = Watch(crashed, "--verbose")
    seen = []
    for line in watcher.process.stdout:
        seen.append(line)
        if "vectors saved" in line:
            watcher.process.kill()
            break
    watcher.process.wait(timeout=WAIT)
    assert watcher.process.returncode == -signal.SIGKILL, "".join(seen)
    assert [r for r in watcher.records() if r["status"] == "ok"] == []

    restart = subprocess.run(
        watcher.command("--once", "--verbose"),
        cwd=REPO,
        env=crashed.env(),
        capture_output=True,
        text=True,
    )
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "reusing" in restart.stderr and "vector(s) of an interrupted build" in restart.stderr
    assert watcher.records()[-1]["status"] == "ok"
    # Everything but the wall-clock times of the two builds.
    clock = [
        row[0]
        for row in clean.query("describe retrieval_store")
        if row[0] in ("embedded_at", "stored_at")
    ]
    comparable = f"(select * exclude ({', '.join(clock)}) from retrieval_store)"
    assert crashed.checksum(comparable) == clean.checksum(comparable)
    assert crashed.query(
        "select count(*) from information_schema.tables "
        "where table_name = 'chunk_embeddings__in_flight'"
    ) == [(0,)]
