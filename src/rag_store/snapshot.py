"""Publishing: the read-only snapshot analysts, the CLI and applications open while dbt
holds the main file. The one home of what is published, where it goes and how it is built.

After a build in which nothing failed, the `publish_snapshot` on-run-end hook asks
`publish_plan()` what to export (the tables of PUBLISHED_TABLES, the paths derived from the
dbt target, whether the current snapshot's retrieval_store can be kept), runs the exports
on dbt's connection (only it can read the store while dbt holds it), and hands the plan to
`publish_snapshot()`, which builds a fresh DuckDB file — tables, BM25 index and the search
table macros — and swaps it in with a rename, so readers see the old snapshot or the new.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from rag_store import search_macros

# The main database file when neither the profile nor the caller names one; profiles.yml
# states the same default for dbt (`RAG_STORE_DB` overrides both).
DEFAULT_DATABASE = "warehouse/rag_store.duckdb"

# In the snapshot the macros live in main beside the tables; store_info has the model_id.
SNAPSHOT_STORE = search_macros.StoreLayout("main", "retrieval_store", "store_info")

# Every published table and the query (over the dbt target's schema) that exports it.
# Optional tables are skipped while they do not exist (embedding_runs before any embedding).
PUBLISHED_TABLES: dict[str, str] = {
    "retrieval_store": "select * from {schema}.retrieval_store",
    "documents": (
        "select doc_id, title, source_uri, updated_at, _loaded_at, metadata, "
        "allowed_principals from {schema}.int_documents__latest where not is_deleted"
    ),
    "documents_rejected": "select * from {schema}.documents_rejected",
    "pipeline_health": "select * from {schema}.pipeline_health",
    "embedding_runs": "select * from {schema}.embedding_runs",
    "store_info": (
        "select model_id, model_reference, dimension, acl_deny_by_default, "
        "(now() at time zone 'UTC') as published_at, "
        "{fingerprint} as retrieval_store_fingerprint from {schema}.int_active_embedder"
    ),
}
OPTIONAL_TABLES = frozenset({"embedding_runs"})


def publish_inputs() -> list[str]:
    """The relations of the store's schema that a publish reads (optional tables aside)."""
    names = {
        name
        for table, query in PUBLISHED_TABLES.items()
        if table not in OPTIONAL_TABLES
        for name in re.findall(r"\{schema\}\.(\w+)", query)
    }
    return sorted(names)


def publish_inputs_json() -> str:
    """publish_inputs as JSON text, for the on-run-end hook."""
    return json.dumps(publish_inputs())


@dataclass(frozen=True)
class SnapshotPaths:
    snapshot: Path
    parquet: Path

    @property
    def export_dir(self) -> Path:
        return self.snapshot.with_name(self.snapshot.name + ".export")


def default_database() -> str:
    """The main database file for callers outside dbt (CLI, evaluation)."""
    return os.environ.get("RAG_STORE_DB", DEFAULT_DATABASE)


def snapshot_paths(
    database: str | os.PathLike, override: str = "", schema: str = "main"
) -> SnapshotPaths:
    """Where the snapshot of the store in `schema` of `database` goes: `override` (var
    snapshot_path) if set, else beside the database (warehouse/rag_store.duckdb ->
    warehouse/rag_store_snapshot.duckdb, or rag_store_<schema>_snapshot.duckdb for a store
    outside `main`, so a CI schema of the same file never overwrites production's); the
    Parquet copy of retrieval_store sits next to the snapshot."""
    override = (override or "").strip()
    if override:
        snapshot = Path(override)
    else:
        path = Path(database)
        infix = "" if schema in ("", "main") else f"_{schema}"
        snapshot = path.with_name(f"{path.stem}{infix}_snapshot.duckdb")
    stem = snapshot.name[: -len(".duckdb")] if snapshot.name.endswith(".duckdb") else snapshot.name
    return SnapshotPaths(snapshot, snapshot.with_name(f"{stem}_retrieval_store.parquet"))


def default_snapshot_path(db_path: str | os.PathLike) -> Path:
    """The snapshot published beside `db_path` when var snapshot_path is not set."""
    return snapshot_paths(db_path).snapshot


# Bump when the snapshot's layout changes (tables, storage settings, index): a snapshot of
# another layout is never reused, whatever its content.
SNAPSHOT_LAYOUT = "3"


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


def publish_plan(database: str, schema: str, override: str, fingerprint: str) -> dict:
    """What the on-run-end hook exports, and where: one entry per published table with its
    query and Parquet file. When the current snapshot already holds exactly this
    retrieval_store (same fingerprint, layout and macros), retrieval_store is not exported
    and `publish_snapshot` keeps the snapshot's copy with its BM25 index."""
    paths = snapshot_paths(database, override, schema)
    reuse = snapshot_is_current(str(paths.snapshot), fingerprint)
    export_dir = paths.export_dir
    try:
        # Left over from a failed run, if it exists.
        shutil.rmtree(export_dir, ignore_errors=True)
        export_dir.mkdir(parents=True)
    except OSError as exc:
        raise PublishError(_os_failure(f"preparing {export_dir}", exc)) from None
    literal = "'" + fingerprint.replace("'", "''") + "'"
    exports = [
        {
            "table": table,
            "query": query.format(schema=schema, fingerprint=literal),
            "file": str(export_dir / f"{table}.parquet"),
            "optional": table in OPTIONAL_TABLES,
        }
        for table, query in PUBLISHED_TABLES.items()
        if not (reuse and table == "retrieval_store")
    ]
    return {
        "snapshot": str(paths.snapshot),
        "parquet": str(paths.parquet),
        "export_dir": str(export_dir),
        "reuse": reuse,
        "exports": exports,
    }


def publish_plan_json(database: str, schema: str, override: str | None, fingerprint: str) -> str:
    """publish_plan as JSON text, for the on-run-end hook (`fromjson` in Jinja)."""
    return json.dumps(publish_plan(database, schema, override or "", fingerprint))


class PublishError(RuntimeError):
    """Publishing failed for an operational reason; the message names cause and remedy."""


def _os_failure(action: str, exc: OSError) -> str:
    remedy = {
        errno.ENOSPC: "free space on that disk or point var snapshot_path at another one",
        errno.EACCES: "make the directory writable or point var snapshot_path elsewhere",
        errno.EROFS: "the file system is read-only: point var snapshot_path elsewhere",
    }.get(exc.errno, "fix the cause and run the build again")
    return (
        f"rag-store: {action} failed: {exc.strerror or exc} — {remedy}; "
        "the previous snapshot is unchanged"
    )


def publish_snapshot(plan_json: str) -> str:
    """Build the snapshot from the plan's Parquet export and swap it in; see publish_plan."""
    plan = json.loads(plan_json)
    try:
        return _publish(plan)
    except OSError as exc:
        raise PublishError(_os_failure(f"publishing {plan['snapshot']}", exc)) from None
    except duckdb.IOException as exc:
        message = str(exc).splitlines()[0]
        raise PublishError(
            f"rag-store: publishing {plan['snapshot']} failed: {message}; "
            "the previous snapshot is unchanged"
        ) from None
    finally:
        shutil.rmtree(plan["export_dir"], ignore_errors=True)


def publish_export(export_dir: str | os.PathLike, snapshot: str | os.PathLike) -> str:
    """Publish a snapshot from an export directory made outside dbt (benchmarks, tools):
    Parquet files named after PUBLISHED_TABLES, store_info included. Nothing is reused."""
    paths = snapshot_paths("", str(snapshot))
    plan = {
        "snapshot": str(paths.snapshot),
        "parquet": str(paths.parquet),
        "export_dir": str(export_dir),
        "reuse": False,
        "exports": [],
    }
    return publish_snapshot(json.dumps(plan))


def _publish(plan: dict) -> str:
    export = Path(plan["export_dir"])
    snapshot = Path(plan["snapshot"])
    parquet = Path(plan["parquet"])
    reuse = bool(plan["reuse"])
    staging = snapshot.with_name(snapshot.name + ".tmp")
    for leftover in (staging, Path(f"{staging}.wal")):
        leftover.unlink(missing_ok=True)
    with duckdb.connect() as scratch:
        info = scratch.execute(f"select * from read_parquet('{export / 'store_info.parquet'}')")
        columns = [column[0] for column in info.description]
        row = dict(zip(columns, info.fetchone(), strict=True))
    # Without a fingerprint (an export made by other code) the snapshot is never reused.
    fingerprint = row.get("retrieval_store_fingerprint") or ""
    if reuse:
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
    kept = " (retrieval_store unchanged: kept with its index)" if reuse else ""
    return f"published {snapshot} and {parquet}{kept}"
