"""The published read-only snapshot: what analysts open while dbt holds the main file.

After a successful build, dbt exports the tables analysts use to Parquet (see the
`publish_snapshot` macro) and calls `publish_snapshot()` here, which builds a fresh DuckDB
file beside the store — tables, a BM25 full-text index and the search table macros — and
then swaps it in with a rename, so readers see either the old snapshot or the new one.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import import_module, resources
from pathlib import Path
from string import Template

import duckdb

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


def extension_path(name: str) -> Path:
    """The .duckdb_extension file of a pip-installed DuckDB extension (no network)."""
    try:
        package = import_module(f"duckdb_extension_{name}")
    except ImportError as exc:
        raise RuntimeError(
            f"the DuckDB extension package duckdb-extension-{name} is not installed"
        ) from exc
    root = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = root / f"{name}.duckdb_extension"
    if not path.exists():
        raise RuntimeError(
            f"{path} is missing: the extension does not match duckdb {duckdb.__version__}"
        )
    return path


def load_extension(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    conn.execute(f"load '{extension_path(name)}'")


def search_macros_sql(dimension: int) -> str:
    text = (resources.files("rag_store") / "sql" / "search_macros.sql").read_text("utf-8")
    return Template(text).substitute(dimension=int(dimension))


def install_search_macros(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the FTS index and the search table macros in a database holding the tables."""
    (dimension,) = conn.execute("select dimension from store_info").fetchone()
    load_extension(conn, "fts")
    conn.execute(
        "pragma create_fts_index('retrieval_store', 'chunk_id', 'title', 'heading_path', "
        "'chunk_text', overwrite = 1)"
    )
    for statement in split_statements(search_macros_sql(dimension)):
        conn.execute(statement)


def split_statements(sql: str) -> list[str]:
    """Split a file of `create macro` statements on the semicolons that end them."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [part.strip() for part in without_comments.split(";\n") if part.strip()]


def prepare_export(export_dir: str) -> str:
    """An empty directory for the Parquet export (left over ones are from failed runs)."""
    shutil.rmtree(export_dir, ignore_errors=True)
    Path(export_dir).mkdir(parents=True)
    return export_dir


def publish_snapshot(export_dir: str, snapshot_path: str, parquet_path: str) -> str:
    export = Path(export_dir)
    snapshot = Path(snapshot_path)
    staging = snapshot.with_name(snapshot.name + ".tmp")
    for leftover in (staging, Path(f"{staging}.wal")):
        leftover.unlink(missing_ok=True)
    with duckdb.connect(str(staging)) as conn:
        # Float compression (ALP/ALPRD) makes every exact vector scan decompress every
        # vector: 2-3x slower searches for a bigger file (see docs/benchmarks.md).
        conn.execute("set disabled_compression_methods = 'alp,alprd,chimp,patas'")
        for table in PUBLISHED_TABLES:
            source = export / f"{table}.parquet"
            if not source.exists():
                continue
            conn.execute(f"create table {table} as select * from read_parquet('{source}')")
        (dimension,) = conn.execute("select dimension from store_info").fetchone()
        conn.execute(
            "create or replace table retrieval_store as select * replace "
            f"(embedding::float[{int(dimension)}] as embedding) from retrieval_store"
        )
        install_search_macros(conn)
        conn.execute("checkpoint")
    os.replace(staging, snapshot)
    parquet = Path(parquet_path)
    parquet_staging = parquet.with_name(parquet.name + ".tmp")
    shutil.copyfile(export / "retrieval_store.parquet", parquet_staging)
    os.replace(parquet_staging, parquet)
    shutil.rmtree(export, ignore_errors=True)
    return f"published {snapshot} and {parquet}"
