"""The published read-only snapshot: what analysts open while dbt holds the main file.

After a successful build, dbt exports the tables analysts use to Parquet (see the
`publish_snapshot` macro) and calls `publish_snapshot()` here, which builds a fresh DuckDB
file beside the store — tables, a BM25 full-text index and the search table macros — and
then swaps it in with a rename, so readers see either the old snapshot or the new one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import duckdb

from rag_store import search_macros

# In the snapshot the macros live in main beside the tables; store_info has the model_id.
SNAPSHOT_STORE = search_macros.StoreLayout("main", "retrieval_store", "store_info")

PUBLISHED_TABLES = (
    "retrieval_store",
    "documents",
    "documents_rejected",
    "pipeline_health",
    "embedding_runs",
    "store_info",
)


def default_snapshot_path(db_path: str | os.PathLike) -> Path:
    """warehouse/rag_store.duckdb -> warehouse/rag_store_snapshot.duckdb"""
    path = Path(db_path)
    return path.with_name(f"{path.stem}_snapshot.duckdb")


# Bump when the snapshot's layout changes (tables, storage settings, index): a snapshot of
# another layout is never reused, whatever its content.
SNAPSHOT_LAYOUT = "2"


def snapshot_key(fingerprint: str) -> str:
    """What a reusable snapshot must have been published with: the same retrieval_store
    (`fingerprint`, computed by the publish_snapshot macro), layout and search macros."""
    digest = hashlib.sha256()
    for part in (SNAPSHOT_LAYOUT, search_macros.template(), fingerprint):
        digest.update(part.encode("utf-8") + b"\x1f")
    return digest.hexdigest()


def snapshot_is_current(snapshot_path: str, fingerprint: str) -> bool:
    """Whether the published snapshot already holds exactly this retrieval_store."""
    if not fingerprint or not Path(snapshot_path).exists():
        return False
    try:
        with duckdb.connect(str(snapshot_path), read_only=True) as conn:
            row = conn.execute("select snapshot_key from store_info").fetchone()
    except duckdb.Error:
        return False
    return bool(row) and row[0] == snapshot_key(fingerprint)


def prepare_export(export_dir: str) -> str:
    """An empty directory for the Parquet export (left over ones are from failed runs)."""
    shutil.rmtree(export_dir, ignore_errors=True)
    Path(export_dir).mkdir(parents=True)
    return export_dir


def publish_snapshot(export_dir: str, snapshot_path: str, parquet_path: str) -> str:
    """Build the snapshot from the Parquet export and swap it in.

    Without retrieval_store.parquet in the export, the current snapshot's retrieval_store
    (checked to be the same, by fingerprint) and its BM25 index are kept: the snapshot file
    is copied and only the other tables are replaced, so a build that changed nothing
    does not pay for re-indexing the whole store.
    """
    export = Path(export_dir)
    snapshot = Path(snapshot_path)
    parquet = Path(parquet_path)
    staging = snapshot.with_name(snapshot.name + ".tmp")
    for leftover in (staging, Path(f"{staging}.wal")):
        leftover.unlink(missing_ok=True)
    with duckdb.connect() as scratch:
        info = scratch.execute(f"select * from read_parquet('{export / 'store_info.parquet'}')")
        columns = [column[0] for column in info.description]
        row = dict(zip(columns, info.fetchone(), strict=True))
    # Without a fingerprint (an export made by other code) the snapshot is never reused.
    fingerprint = row.get("retrieval_store_fingerprint") or ""
    reuse = not (export / "retrieval_store.parquet").exists()
    if reuse:
        if not snapshot_is_current(str(snapshot), fingerprint):
            raise RuntimeError(
                f"{snapshot} does not hold the current retrieval_store and no export of it "
                "was made; run the build again"
            )
        shutil.copyfile(snapshot, staging)
    with duckdb.connect(str(staging)) as conn:
        # Float compression (ALP/ALPRD) makes every exact vector scan decompress every
        # vector: 2-3x slower searches for a bigger file (see docs/benchmarks.md).
        conn.execute("set disabled_compression_methods = 'alp,alprd,chimp,patas'")
        for table in PUBLISHED_TABLES:
            source = export / f"{table}.parquet"
            if not source.exists():
                continue
            conn.execute(
                f"create or replace table {table} as select * from read_parquet('{source}')"
            )
        (dimension,) = conn.execute("select dimension from store_info").fetchone()
        if not reuse:
            conn.execute(
                "create or replace table retrieval_store as select * replace "
                f"(embedding::float[{int(dimension)}] as embedding) from retrieval_store"
            )
        conn.execute("alter table store_info add column snapshot_key varchar")
        conn.execute(
            "update store_info set snapshot_key = $key", {"key": snapshot_key(fingerprint)}
        )
        search_macros.install(conn, SNAPSHOT_STORE, dimension, keyword_index=not reuse)
        if reuse and not parquet.exists():
            conn.execute(f"copy retrieval_store to '{export / 'retrieval_store.parquet'}'")
        conn.execute("checkpoint")
    os.replace(staging, snapshot)
    if (export / "retrieval_store.parquet").exists():
        parquet_staging = parquet.with_name(parquet.name + ".tmp")
        shutil.copyfile(export / "retrieval_store.parquet", parquet_staging)
        os.replace(parquet_staging, parquet)
    shutil.rmtree(export, ignore_errors=True)
    kept = " (retrieval_store unchanged: kept with its index)" if reuse else ""
    return f"published {snapshot} and {parquet}{kept}"
