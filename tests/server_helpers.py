"""A real `rag-store serve` process on 127.0.0.1 for the server tests, and plain HTTP calls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb
from conftest import BIN, REPO, DbtProject

from rag_store.duckdb_ext import load_extension
from rag_store.search_macros import keyword_index_sql
from rag_store.snapshot import SNAPSHOT_STORE, default_snapshot_path

LISTENING = "rag-store serve: listening on "


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class ServerProcess:
    """`rag-store serve --port 0 …`: the port is read from the line the server prints."""

    def __init__(self, project: DbtProject, *args: str, env: dict | None = None, wait=60.0):
        self.log = project.root / f"serve-{time.monotonic_ns()}.log"
        self._log_handle = self.log.open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "rag-store"), "serve", "--port", "0", *args],
            cwd=REPO,
            env=project.env(env),
            stdout=subprocess.PIPE,
            stderr=self._log_handle,
            text=True,
        )
        self.url = None
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                if line.startswith(LISTENING):
                    self.url = line[len(LISTENING) :].split()[0]
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + wait
        while not found.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"rag-store serve did not start:\n{self.stderr()}")

    def stderr(self) -> str:
        self._log_handle.flush()
        return self.log.read_text()

    def get(self, path: str, headers: dict | None = None) -> Response:
        return request("GET", self.url + path, headers=headers)

    def post(self, path: str, body, headers: dict | None = None) -> Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        return request(
            "POST", self.url + path, data, {"Content-Type": "application/json"} | (headers or {})
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_handle.close()


def request(method: str, url: str, data: bytes | None = None, headers=None) -> Response:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return Response(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), dict(exc.headers))


def snapshot_of(project: DbtProject) -> Path:
    return default_snapshot_path(project.db)


def publish_by_hand(snapshot: Path, change_sql: str) -> None:
    """Publish a modified copy of `snapshot` the way a build does: written aside, its keyword
    index brought up to date, renamed in."""
    staging = snapshot.with_name(snapshot.name + ".hand")
    shutil.copyfile(snapshot, staging)
    with duckdb.connect(str(staging)) as conn:
        load_extension(conn, "fts")
        conn.execute(change_sql)
        for statement in keyword_index_sql(SNAPSHOT_STORE):
            conn.execute(statement)
        conn.execute("checkpoint")
    os.replace(staging, snapshot)
