"""The dbt unit tests (`unit_tests:` in the models' YAML) run here, so CI runs them.

They check the SQL logic on fixed inputs: the reject ladder of staging, the latest-version
choice of int_documents__latest (full and incremental builds, late rows, tombstones, ties),
the pipeline_health arithmetic and the reject list. Unit tests read the column types of
their inputs from the database, so a small store is built first; the unit tests themselves
then run without the model or any feed file.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import HASH_EMBEDDER, REPO, document, write_feed

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("dbt_unit_tests")]

# Every unit test of the project; a new one is added here too, so none is lost unnoticed.
UNIT_TESTS = {
    "stg_docs__reject_ladder",
    "stg_docs__cleaning",
    "stg_docs__whitespace_only_body_is_empty",
    "stg_docs__metadata_and_principals",
    "stg_docs__directory_files",
    "int_documents__latest_full_build",
    "int_documents__latest_incremental",
    "int_documents__latest_removed_directory_file",
    "pipeline_health_counts_and_coverage",
    "pipeline_health_lag",
    "pipeline_health_empty_store",
    "documents_rejected_feed_and_directory",
}


def test_every_dbt_unit_test_passes(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    write_feed(dbt_project, "1.jsonl", [document("guide/one", "A short guide.")])
    dbt_project.dbt("build", "--exclude-resource-type", "unit_test")

    # Unit tests are run explicitly, whatever resource types the environment leaves out.
    completed = subprocess.run(
        dbt_project.command("test", "--select", "test_type:unit"),
        cwd=REPO,
        env=dbt_project.env({"DBT_EXCLUDE_RESOURCE_TYPES": None, "DBT_RESOURCE_TYPES": None}),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    run_results = json.loads((dbt_project.root / "target" / "run_results.json").read_text())
    results = {
        result["unique_id"].rsplit(".", 1)[-1]: result
        for result in run_results["results"]
        if result["unique_id"].startswith("unit_test.")
    }
    failures = {
        name: f"{result['status']}: {result['message']}"
        for name, result in results.items()
        if result["status"] != "pass"
    }
    assert not failures, f"unit tests failed: {failures}\n{output[-6000:]}"
    assert set(results) == UNIT_TESTS
    assert len(results) == len(UNIT_TESTS) == 12
    assert completed.returncode == 0, output[-6000:]
