"""Shared fixtures. The real tokenizer of the default embedder is used everywhere (it is a
small Rust library, no torch); only tests that say so use a fake embedder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from rag_store.chunking import load_tokenizer
from rag_store.embedder_info import DEFAULT_MODEL, embedder_info


@pytest.fixture(scope="session")
def default_info():
    return embedder_info(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tokenizer(default_info):
    return load_tokenizer(str(default_info.tokenizer_file))


# ---------------------------------------------------------------- real dbt runs


REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BIN = Path(sys.executable).parent

# The fake embedder for tests about rows, not vector quality: deterministic, and no torch.
HASH_EMBEDDER = {"embedding_model": "hash:all-MiniLM-L6-v2"}


@dataclass
class DbtResult:
    returncode: int
    output: str

    @property
    def embedded(self) -> int:
        """Chunks the chunk_embeddings model said it had to embed in this run."""
        counts = re.findall(r"chunk_embeddings: (\d+) chunk\(s\) to embed", self.output)
        assert counts, f"chunk_embeddings did not report its work:\n{self.output[-3000:]}"
        return int(counts[-1])


@dataclass
class DbtProject:
    """A temporary store: its own DuckDB file, feed directory, target and log paths."""

    root: Path
    vars: dict = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.root / "store.duckdb"

    @property
    def feed_dir(self) -> Path:
        path = self.root / "feed"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def deliver(self, *files: Path) -> None:
        """Drop feed files into the feed directory, as a producer would."""
        for file in files:
            shutil.copy(file, self.feed_dir / file.name)

    def feed_vars(self, vars: dict | None = None) -> dict:
        """The dbt vars for this project: its feed, then `self.vars`, then `vars`."""
        return {"document_feed": f"{self.feed_dir}/*.jsonl", **self.vars, **(vars or {})}

    def project_options(self, vars: dict | None = None) -> list[str]:
        """`--project-dir` and `--vars`, as both dbt and `rag-store alerts` take them."""
        return ["--project-dir", str(REPO), "--vars", json.dumps(self.feed_vars(vars))]

    def env(self, extra: dict[str, str | None] | None = None) -> dict:
        """The environment every dbt and rag-store run gets; `extra` adds (None: unsets)."""
        env = dict(os.environ)
        env.update(
            RAG_STORE_DB=str(self.db),
            DBT_PROFILES_DIR=str(REPO),
            DBT_SEND_ANONYMOUS_USAGE_STATS="False",
            HF_HUB_OFFLINE="1",
            # dbt's unit tests check fixed inputs, not this store: they run once, in
            # tests/test_dbt_unit_tests.py, rather than in every build of every test.
            DBT_EXCLUDE_RESOURCE_TYPES="unit_test",
        )
        for name, value in (extra or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def command(self, *args: str, vars: dict | None = None) -> list[str]:
        """The dbt command line for this project (its feed, database, target and logs)."""
        return [
            str(BIN / "dbt"),
            *args,
            *self.project_options(vars),
            *("--target-path", str(self.root / "target")),
            *("--log-path", str(self.root / "logs")),
        ]

    def dbt(self, *args: str, vars: dict | None = None, check: bool = True) -> DbtResult:
        command = self.command(*args, vars=vars)
        completed = subprocess.run(
            command, cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=900
        )
        result = DbtResult(completed.returncode, completed.stdout + completed.stderr)
        if check and completed.returncode != 0:
            raise AssertionError(f"dbt {' '.join(args)} failed:\n{result.output[-6000:]}")
        return result

    def start_dbt(self, *args: str, vars: dict | None = None) -> subprocess.Popen:
        """Start dbt without waiting; stdout and stderr come as one text stream."""
        return subprocess.Popen(
            self.command(*args, vars=vars),
            cwd=REPO,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def rag_store(
        self,
        *args: str,
        db: Path | None = None,
        env_extra: dict[str, str | None] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        """`rag-store ARGS --db DB` (default: this project's database), in its environment."""
        return subprocess.run(
            [str(BIN / "rag-store"), *args, "--db", str(db or self.db)],
            cwd=REPO,
            env=self.env(env_extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def build(self, **kwargs) -> DbtResult:
        return self.dbt("build", **kwargs)

    def query(self, sql: str, params=None) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()

    def checksum(self, table: str = "retrieval_store") -> str:
        """Order-sensitive digest of every column of `table`."""
        rows = self.query(f"select * from {table} order by chunk_id")
        return hashlib.sha256(repr(rows).encode("utf-8")).hexdigest()


@pytest.fixture
def dbt_project(tmp_path) -> DbtProject:
    return DbtProject(tmp_path)


def document(doc_id: str, body: str, **fields) -> dict:
    """One feed row with sensible defaults; override any field by keyword."""
    row = {
        "doc_id": doc_id,
        "title": fields.pop("title", doc_id.replace("/", " ").title()),
        "body": body,
        "source_uri": f"https://docs.example/{doc_id}",
        "updated_at": "2026-05-01T09:00:00Z",
        "is_deleted": False,
        "_loaded_at": "2026-05-02T06:00:00Z",
    }
    row.update(fields)
    return row


def write_feed(project: DbtProject, name: str, rows: list[dict]) -> Path:
    """Deliver one JSON-lines feed file into the project's feed directory."""
    path = project.feed_dir / name
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def long_body(sections: int, marker: str = "", words_per_section: int = 60) -> str:
    """A markdown body of `sections` sections, each one short chunk; `marker` edits one."""
    vocabulary = [
        *("river", "stone", "lamp", "orchard", "copper"),
        *("meadow", "harbor", "lantern", "willow", "ember"),
    ]
    parts = []
    for number in range(sections):
        words = " ".join(vocabulary[(i * 7 + number) % 10] for i in range(words_per_section))
        extra = f" {marker}" if marker and number == 2 else ""
        parts.append(f"## Section {number}\n\n{words}.{extra}")
    return "\n\n".join(parts)
