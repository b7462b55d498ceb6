"""rag-store under the dbt workflows of a real project: slim CI with --defer, --empty, partial
selections, alert tests only when asked, `dbt source freshness` with no arguments.

The hash embedder stands in for the model: these tests are about which relations a dbt
invocation writes, not about vectors."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import duckdb
import pytest
from conftest import HASH_EMBEDDER, DbtProject, document, long_body, write_feed

pytestmark = pytest.mark.e2e


def table_checksums(db: Path, schema: str = "main") -> dict[str, str]:
    """Row count and an ordered digest of every table of `schema` in `db`."""
    sums = {}
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables "
            "where table_schema = ? and table_type = 'BASE TABLE' order by 1",
            [schema],
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f'select * from "{schema}"."{table}" order by all').fetchall()
            sums[table] = f"{len(rows)}:{hashlib.sha256(repr(rows).encode()).hexdigest()}"
    return sums


def executed(project: DbtProject) -> list[str]:
    """unique_ids of the nodes the last dbt invocation of `project` ran."""
    results = json.loads((project.root / "target" / "run_results.json").read_text())
    return [result["unique_id"] for result in results["results"]]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_store(dbt_project: DbtProject) -> None:
    dbt_project.vars = {**HASH_EMBEDDER, "golden_min_recall": 0}
    write_feed(
        dbt_project,
        "2026-05-02.jsonl",
        [
            document(f"guide/{n}", long_body(3, marker=marker))
            for n, marker in enumerate(("alpaca", "bison", "caribou", "dingo"))
        ],
    )


def two_target_profiles(dbt_project: DbtProject) -> Path:
    """profiles.yml with prod (schema main) and ci (schema ci) in the same database file:
    the usual slim-CI set-up."""
    directory = dbt_project.root / "profiles"
    directory.mkdir()
    outputs = {
        name: {
            "type": "duckdb",
            "path": str(dbt_project.db),
            "schema": schema,
            "threads": 1,
            "plugins": [{"module": "rag_store.dbt_plugin"}],
        }
        for name, schema in (("prod", "main"), ("ci", "ci"))
    }
    profile = {"rag_store": {"target": "prod", "outputs": outputs}}
    (directory / "profiles.yml").write_text(json.dumps(profile), encoding="utf-8")
    return directory


def test_slim_ci_with_defer_writes_only_the_ci_target(dbt_project):
    small_store(dbt_project)
    profiles = two_target_profiles(dbt_project)
    prod = dbt_project.dbt("build", "--profiles-dir", str(profiles))
    assert "published" in prod.output
    state = dbt_project.root / "prod-state"
    (dbt_project.root / "target").rename(state)
    snapshot = dbt_project.root / "store_snapshot.duckdb"
    before, snapshot_before = table_checksums(dbt_project.db), file_digest(snapshot)

    # The CI build selects the store and what is downstream of it; everything upstream is
    # deferred to prod. retrieval_store's post-hooks prune chunk_embeddings and install the
    # search macros: they must act on the CI schema only.
    ci = dbt_project.dbt(
        "build",
        "--profiles-dir",
        str(profiles),
        "--target",
        "ci",
        "--select",
        "retrieval_store+",
        "--defer",
        "--state",
        str(state),
    )
    assert "snapshot not published: a --defer build" in ci.output
    assert not [node for node in executed(dbt_project) if ".alert_" in node]
    assert table_checksums(dbt_project.db) == before, "the CI build changed a prod table"
    assert file_digest(snapshot) == snapshot_before, "the CI build re-published prod"
    assert not (dbt_project.root / "store_ci_snapshot.duckdb").exists()

    # The CI target holds a correct store: the same rows as prod, searchable in its schema.
    with duckdb.connect(str(dbt_project.db), read_only=True) as conn:
        ci_rows = conn.sql("select chunk_id, chunk_hash from ci.retrieval_store order by 1")
        prod_rows = conn.sql("select chunk_id, chunk_hash from main.retrieval_store order by 1")
        assert ci_rows.fetchall() == prod_rows.fetchall() != []
    hits = dbt_project.dbt(
        "run-operation",
        "search",
        "--profiles-dir",
        str(profiles),
        "--target",
        "ci",
        "--args",
        json.dumps({"query": "caribou", "mode": "keyword", "k": 1}),
    )
    assert "guide/2" in hits.output, hits.output[-3000:]


def test_a_partial_selection_does_not_publish(dbt_project):
    small_store(dbt_project)
    dbt_project.build()
    snapshot = dbt_project.root / "store_snapshot.duckdb"
    published = file_digest(snapshot)
    partial = dbt_project.dbt("build", "--select", "int_documents__latest")
    assert "snapshot not published: retrieval_store was not built" in partial.output
    assert file_digest(snapshot) == published


def test_empty_is_refused_on_a_store_and_is_a_dry_run_on_a_new_target(dbt_project, tmp_path):
    small_store(dbt_project)
    dbt_project.build()
    snapshot = dbt_project.root / "store_snapshot.duckdb"
    before, snapshot_before = table_checksums(dbt_project.db), file_digest(snapshot)

    refused = dbt_project.dbt("build", "--empty", check=False)
    assert refused.returncode != 0
    assert "refusing `--empty`" in refused.output
    assert table_checksums(dbt_project.db) == before
    assert file_digest(snapshot) == snapshot_before

    # On a target with no store, --empty checks that everything compiles and runs.
    fresh = DbtProject(tmp_path / "fresh")
    fresh.vars = dict(dbt_project.vars)
    fresh.deliver(*dbt_project.feed_dir.iterdir())
    dry_run = fresh.dbt("build", "--empty")
    assert "snapshot not published: an --empty build" in dry_run.output
    assert fresh.query("select count(*) from retrieval_store") == [(0,)]
    assert not (fresh.root / "store_snapshot.duckdb").exists()


def test_alert_tests_run_only_when_asked_and_freshness_needs_no_arguments(dbt_project):
    small_store(dbt_project)

    def tests(vars=None) -> set[str]:
        listed = dbt_project.dbt(
            "-q", "ls", "--resource-type", "test", "--output", "name", vars=vars
        )
        return set(listed.output.split())

    assert tests(), "no test listed"
    assert not {name for name in tests() if name.startswith("alert_")}
    asked = tests(vars={"alert_tests": True})
    assert {"alert_p95_lag_seconds", "alert_unprocessed_feed_rows"} <= asked

    freshness = dbt_project.dbt("source", "freshness", check=False)
    sources = json.loads((dbt_project.root / "target" / "sources.json").read_text())
    checked = {result["unique_id"] for result in sources["results"]}
    assert "source.rag_store.docs.document_changes" in checked, freshness.output


def test_a_missing_plugin_fails_in_one_line_naming_the_fix(dbt_project):
    small_store(dbt_project)
    profiles = dbt_project.root / "no-plugin"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        textwrap.dedent(
            f"""\
            rag_store:
              target: dev
              outputs:
                dev:
                  type: duckdb
                  path: {dbt_project.db}
                  threads: 1
            """
        ),
        encoding="utf-8",
    )
    result = dbt_project.dbt("build", "--profiles-dir", str(profiles), check=False)
    assert result.returncode != 0
    assert "plugins: [{module: rag_store.dbt_plugin}]" in result.output
    assert "Traceback" not in result.output
