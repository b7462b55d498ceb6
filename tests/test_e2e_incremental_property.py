"""Property: after any history of feed batches, the incremental store equals a store built
from scratch on the same files.

Uses the test-only `hash:` embedder (deterministic pseudo-vectors, no torch) so that many
real `dbt build` runs fit in the test budget; chunking, dbt and DuckDB are all real.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from conftest import DbtProject, document, long_body, write_feed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.e2e

FAKE_EMBEDDER = {"embedding_model": "hash:all-MiniLM-L6-v2"}
DOC_IDS = ["alpha", "beta", "gamma", "delta"]
EPOCH = datetime(2026, 1, 1)

operation = st.tuples(
    st.sampled_from(["insert_or_update", "delete", "late", "duplicate"]),
    st.sampled_from(DOC_IDS),
    st.integers(min_value=1, max_value=4),  # sections in the new body
    st.integers(min_value=0, max_value=3),  # which edit marker
)
histories = st.lists(st.lists(operation, min_size=1, max_size=4), min_size=1, max_size=3)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def comparable_store(project: DbtProject) -> list[tuple]:
    """retrieval_store minus embedded_at (when a vector was computed differs by design)."""
    return project.query("select * exclude (embedded_at) from retrieval_store order by chunk_id")


def materialise(history) -> list[list[dict]]:
    """Turn abstract operations into feed rows with consistent timestamps."""
    batches, delivered, current_update = [], [], {}
    clock = EPOCH
    for batch_number, operations in enumerate(history):
        loaded_at = iso(EPOCH + timedelta(days=30 * (batch_number + 1)))
        rows = []
        for kind, doc_id, sections, marker in operations:
            clock += timedelta(hours=1)
            body = long_body(sections, f"Edit {marker}.")
            if kind == "insert_or_update":
                row = document(doc_id, body, updated_at=iso(clock), _loaded_at=loaded_at)
                current_update[doc_id] = clock
            elif kind == "delete":
                row = document(
                    doc_id, "", is_deleted=True, updated_at=iso(clock), _loaded_at=loaded_at
                )
                current_update[doc_id] = clock
            elif kind == "late":
                # An older version than anything current, delivered now.
                older = current_update.get(doc_id, clock) - timedelta(days=365, minutes=marker)
                row = document(
                    doc_id, body + " (stale)", updated_at=iso(older), _loaded_at=loaded_at
                )
            else:  # duplicate: deliver an earlier row again, unchanged
                if not delivered:
                    continue
                row = dict(delivered[(sections + marker) % len(delivered)])
            rows.append(row)
        delivered.extend(rows)
        batches.append(rows)
    return batches


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories)
def test_incremental_equals_full_rebuild_after_every_batch(tmp_path_factory, history):
    incremental = DbtProject(tmp_path_factory.mktemp("incremental"), dict(FAKE_EMBEDDER))
    for number, rows in enumerate(materialise(history)):
        if not rows:
            continue
        write_feed(incremental, f"batch_{number:02d}.jsonl", rows)
        incremental.build()
        rebuilt = DbtProject(tmp_path_factory.mktemp("rebuilt"), dict(FAKE_EMBEDDER))
        rebuilt.deliver(*sorted(incremental.feed_dir.glob("*.jsonl")))
        rebuilt.build()
        assert comparable_store(incremental) == comparable_store(rebuilt)
