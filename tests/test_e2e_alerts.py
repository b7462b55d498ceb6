"""`rag-store alerts` on real builds: stale feed, lagging pipeline, coverage gap, clean state.

Builds use the test-only `hash:` embedder (no torch); freshness, the alert tests and the
artifacts they produce are real dbt. The webhook goes to a real HTTP server on localhost.
"""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import HASH_EMBEDDER, DbtProject, document, write_feed

from rag_store.embedding import HASH_FAILURE_MARKER

pytestmark = pytest.mark.e2e


def hours_ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def fresh(doc_id: str, body: str, loaded_hours_ago: float = 0.5) -> dict:
    return document(
        doc_id,
        body,
        updated_at=hours_ago(loaded_hours_ago + 1),
        _loaded_at=hours_ago(loaded_hours_ago),
    )


class Receiver:
    """A localhost HTTP server that records JSON bodies POSTed to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def alerts(project: DbtProject, *args: str, webhook: str | None = None):
    """`rag-store alerts` on `project`; only `webhook` (if any) is the alert webhook."""
    return project.rag_store(
        "alerts",
        *project.project_options(),
        *args,
        env_extra={"RAG_STORE_ALERT_WEBHOOK": webhook or None},
        timeout=600,
    )


def problem_lines(completed) -> list[str]:
    return [line for line in completed.stdout.splitlines() if line.startswith(("WARN", "ERROR"))]


def test_clean_state_exits_zero_posts_ok_and_an_unreachable_webhook_is_not_fatal(
    dbt_project, receiver
):
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(dbt_project, "1.jsonl", [fresh("a", "Alpha."), fresh("b", "Beta.")])
    dbt_project.build()
    completed = alerts(dbt_project, webhook=receiver.url)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("OK     all 8 checks passed")
    assert "webhook: delivered" in completed.stderr
    (payload,) = receiver.received
    assert payload["status"] == "ok"
    assert payload["text"] == "rag-store: all 8 checks ok"
    assert payload["problems"] == []

    # The same clean store, the webhook unreachable: reported, not fatal, history kept.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    history = dbt_project.root / "history.jsonl"
    for _ in range(2):
        completed = alerts(
            dbt_project, "--history", str(history), webhook=f"http://127.0.0.1:{closed_port}/"
        )
        assert completed.returncode == 0
        assert "webhook: NOT delivered" in completed.stderr
    runs = [json.loads(line) for line in history.read_text().splitlines()]
    assert [run["status"] for run in runs] == ["ok", "ok"]
    assert all(run["notes"] and "NOT delivered" in run["notes"][0] for run in runs)


def test_stale_feed_warns_with_observed_age_and_thresholds(dbt_project, receiver):
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(dbt_project, "1.jsonl", [fresh("a", "Alpha.", loaded_hours_ago=30)])
    dbt_project.build()
    completed = alerts(dbt_project, "--format", "json", webhook=receiver.url)
    assert completed.returncode == 1
    report = json.loads(completed.stdout)
    assert report["status"] == "warn"
    freshness = {p["check"]: p for p in report["problems"]}["freshness:docs.document_changes"]
    assert freshness["status"] == "warn"
    assert 29.9 < freshness["observed"] < 30.5
    assert freshness["threshold"].startswith("warn after 24 hour, error after 72 hour")
    (payload,) = receiver.received
    assert payload["status"] == "warn"
    assert "freshness:docs.document_changes" in payload["text"]


def test_lagging_pipeline_reports_unprocessed_rows(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(dbt_project, "1.jsonl", [fresh("a", "Alpha.", loaded_hours_ago=3)])
    dbt_project.build()
    # A delivery lands after the build and no build follows.
    write_feed(dbt_project, "2.jsonl", [fresh("b", "Beta.", loaded_hours_ago=2)])
    completed = alerts(dbt_project)
    assert completed.returncode == 1
    (line,) = problem_lines(completed)
    assert line.startswith("WARN   unprocessed_feed_minutes")
    observed = float(line.split("observed=")[1].split()[0])
    assert 119 < observed < 125
    assert "threshold=>60" in line


def test_coverage_gap_is_an_error(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    poisoned = f"Cannot embed {HASH_FAILURE_MARKER}."
    write_feed(dbt_project, "1.jsonl", [fresh("a", "Alpha."), fresh("b", poisoned)])
    dbt_project.build(check=False)
    completed = alerts(dbt_project)
    assert completed.returncode == 2
    lines = {line.split()[1]: line for line in problem_lines(completed)}
    assert lines["coverage"].startswith("ERROR")
    assert "observed=0.5" in lines["coverage"] and "threshold=<0.95" in lines["coverage"]
    assert lines["failed_chunks"].startswith("WARN")
