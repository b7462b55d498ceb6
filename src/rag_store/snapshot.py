"""Publishing: the read-only snapshot analysts, the CLI, the server and applications open
while dbt holds the main file. The one home of what is published, where it goes and how.

After a build in which nothing failed, the `publish_snapshot` on-run-end hook asks
`publish_plan()` for the statements of this publish and runs them on dbt's connection (only
it can read the store while dbt holds it). A publish costs what the build changed: the
snapshot the last publish replaced (`<snapshot>.previous`) is moved to a staging file when no
reader still has it open (a copy of the current snapshot otherwise), attached, and patched with
the documents whose rows differ from the store's (by chunk_id and the stored_at that
retrieval_store stamps on every row it writes), so
no byte of an unchanged document is copied; the keyword index
re-tokenizes only their chunks (sql/keyword_index.sql) and the small tables are replaced.
`publish_swap()` then renames the staging file over the snapshot, so a reader sees the old
store or the new one, never half of one, and keeps the replaced snapshot as
`<snapshot>.previous` for `rollback()`. A snapshot of another layout, or none, is built
whole the same way from an empty file.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from rag_store import search_macros
from rag_store.duckdb_ext import load_extension

# The main database file when neither the profile nor the caller names one; profiles.yml
# states the same default for dbt (`RAG_STORE_DB` overrides both).
DEFAULT_DATABASE = "warehouse/rag_store.duckdb"

# In the snapshot the macros live in main beside the tables; store_info has the model_id.
SNAPSHOT_STORE = search_macros.StoreLayout("main", "retrieval_store", "store_info")

# The store and the query (over the dbt target's `{schema}`) that it is patched from.
STORE_TABLE = "retrieval_store"
STORE_QUERY = "select * from {schema}.retrieval_store"

# The small tables replaced whole on every publish and the queries that export them.
# Optional tables are skipped while they do not exist (embedding_runs before any embedding).
PUBLISHED_TABLES: dict[str, str] = {
    "documents": (
        "select doc_id, title, source_uri, updated_at, _loaded_at, metadata, "
        "allowed_principals from {schema}.int_documents__latest where not is_deleted"
    ),
    "documents_rejected": "select * from {schema}.documents_rejected",
    "pipeline_health": "select * from {schema}.pipeline_health",
    "embedding_runs": "select * from {schema}.embedding_runs",
    "store_info": (
        "select model_id, model_reference, dimension, acl_deny_by_default "
        "from {schema}.int_active_embedder"
    ),
}
OPTIONAL_TABLES = frozenset({"embedding_runs"})

# Bump when the snapshot's layout changes (tables, columns, storage settings): a snapshot of
# another layout (or keyword analyzer) is never patched, it is built whole once.
SNAPSHOT_LAYOUT = "4"

# The staging file is attached to dbt's connection under this name while it is patched, and
# the current snapshot under the second (read-only) when the staging file is not its copy.
STAGING_ALIAS = "rag_publish"
PUBLISHED_ALIAS = "rag_published"

# In a patch plan, the statements marked `expand` hold this marker where their doc_id
# condition goes; the hook has it replaced (SQL function rag_publish_expand, that is
# expand_changed_documents) with the doc_ids of temp table rag_publish_changes, filled by an
# earlier statement of the plan.
CHANGED_DOCUMENTS = "/*rag_changed_documents*/ true"
MAX_LITERAL_DOCUMENTS = 2000


def publish_inputs() -> list[str]:
    """The relations of the store's schema that a publish reads (optional tables aside)."""
    queries = [STORE_QUERY] + [
        query for table, query in PUBLISHED_TABLES.items() if table not in OPTIONAL_TABLES
    ]
    return sorted({name for query in queries for name in re.findall(r"\{schema\}\.(\w+)", query)})


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


def layout_key() -> str:
    """What a snapshot must have been published with to be patched rather than rebuilt: the
    layout and the keyword analyzer that made its index."""
    digest = hashlib.sha256()
    for part in (SNAPSHOT_LAYOUT, search_macros.template("keyword_index.sql")):
        digest.update(part.encode("utf-8") + b"\x1f")
    return digest.hexdigest()[:16]


def _patchable(snapshot: Path) -> bool:
    """Whether the published snapshot can be patched: it exists, opens, has this layout."""
    if not snapshot.exists():
        return False
    try:
        with duckdb.connect(str(snapshot), read_only=True) as conn:
            row = conn.execute("select snapshot_layout from store_info").fetchone()
    except duckdb.Error:
        return False
    return bool(row) and row[0] == layout_key()


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


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _staging(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".tmp")


def previous_path(snapshot: str | os.PathLike) -> Path:
    """Where the snapshot a publish replaced is kept, for `rollback`."""
    snapshot = Path(snapshot)
    return snapshot.with_name(snapshot.name + ".previous")


def _open_elsewhere(path: Path) -> bool:
    """Whether another process has `path` open through DuckDB, which holds a POSIX lock on
    the whole file for as long as a connection is open (shared for a reader)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # and with it the probe's own lock
    return False


def _reuse_previous(snapshot: Path, staging: Path) -> bool:
    """Move the snapshot the last publish replaced to `staging`, to be patched in place, when
    that is safe: it is a file of its own (not a link to the current one) with this layout,
    fully checkpointed, and no reader still has it open (a reader that opened the store two
    publishes ago would otherwise see its pages change). Otherwise leave it and say no."""
    previous = previous_path(snapshot)
    if not previous.exists() or Path(f"{previous}.wal").exists():
        return False
    if os.path.samefile(previous, snapshot):
        return False
    os.replace(previous, staging)  # renamed first: nothing opens it by this name
    if _open_elsewhere(staging) or not _patchable(staging):
        os.replace(staging, previous)
        return False
    return True


def _prepare_staging(snapshot: Path, patch: bool) -> tuple[Path, bool]:
    """A fresh staging file and whether it is the replaced snapshot rather than a copy of the
    current one: to patch (see _reuse_previous), or empty (built whole). While a publish
    patches the replaced snapshot, `rollback` has nothing to go back to."""
    staging = _staging(snapshot)
    try:
        for leftover in (staging, Path(f"{staging}.wal")):
            leftover.unlink(missing_ok=True)
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        if patch and _reuse_previous(snapshot, staging):
            return staging, True
        if patch:
            shutil.copyfile(snapshot, staging)
    except OSError as exc:
        raise PublishError(_os_failure(f"preparing {staging}", exc)) from None
    return staging, False


def _changed_documents(left: str, right: str, key: str) -> str:
    """The doc_ids with a row (by `key` columns) on one side only: one pass over each side
    (an `except` both ways reads each twice and took ten times as long)."""
    return (
        "select distinct doc_id from (select doc_id from ("
        f"select {key}, 1 as side from {left} union all select {key}, 2 as side from {right}"
        f") as both_sides group by {key} having min(side) = max(side)) as one_sided"
    )


def publish_statements(
    sources: dict[str, str],
    row_key: list[str],
    dimension: int,
    patch: bool,
    staging: str | os.PathLike,
    home_catalog: str,
    published: str | os.PathLike | None = None,
) -> list[dict]:
    """The statements of one publish, run in order on a connection that can read `sources`
    (table -> query; STORE_TABLE and every PUBLISHED_TABLES entry that exists). Each is
    `{"sql": ..., "requires": table or None}`: a statement whose table is optional and
    missing is skipped by the caller. Patching compares `row_key` columns per document;
    `published` names the current snapshot when the staging file is an older one, so that
    `changed_documents` still counts what changed since the current one."""
    key = ", ".join(_identifier(column) for column in row_key)
    store = f"main.{STORE_TABLE}"
    # Vectors as FLOAT[d] whatever the source (a Parquet export may hold FLOAT[]).
    source = (
        f"(select * replace (embedding::float[{int(dimension)}] as embedding) "
        f"from ({sources[STORE_TABLE]}))"
    )
    statements = [
        f"attach {_literal(staging)} as {STAGING_ALIAS}",
        # Float compression (ALP/ALPRD) makes every exact vector scan decompress every
        # vector: 2-3x slower searches for a bigger file (see docs/benchmarks.md).
        "set disabled_compression_methods = 'alp,alprd,chimp,patas'",
        f"use {STAGING_ALIAS}",
    ]
    if patch:
        statements.append(
            "create or replace temp table rag_publish_changes as "
            + _changed_documents(store, source, key)
        )
        if published is not None:
            statements += [
                f"attach {_literal(published)} as {PUBLISHED_ALIAS} (read_only)",
                "create or replace temp table rag_publish_news as "
                + _changed_documents(f"{PUBLISHED_ALIAS}.{store}", source, key),
                f"detach {PUBLISHED_ALIAS}",
            ]
        else:
            statements.append(
                "create or replace temp table rag_publish_news as select * from rag_publish_changes"
            )
        # The changed doc_ids go into these two as a literal list (CHANGED_DOCUMENTS):
        # DuckDB pushes a constant IN list into the scans, where `in (select ...)` read
        # every row and vector of the store (9 s of a publish at a million chunks, busy
        # machine; docs/benchmarks.md).
        statements += [
            {"sql": f"delete from {store} where {CHANGED_DOCUMENTS}", "expand": True},
            {
                "sql": f"insert into {store} by name select * from {source} as source "
                f"where {CHANGED_DOCUMENTS} order by doc_id, chunk_index",
                "expand": True,
            },
        ]
    else:
        statements += [
            "create or replace temp table rag_publish_news as "
            f"select distinct doc_id from {source}",
            f"create table {store} as select * from {source} order by doc_id, chunk_index",
        ]
    for table in PUBLISHED_TABLES:
        if table not in sources:  # an export made outside dbt may hold only some tables
            continue
        if table == "store_info":
            query = (
                f"select *, (now() at time zone 'UTC') as published_at, "
                f"{_literal(layout_key())} as snapshot_layout, "
                "(select count(*) from rag_publish_news) as changed_documents, "
                f"{'false' if patch else 'true'} as built_whole "
                f"from ({sources[table]})"
            )
        else:
            query = sources[table]
        statements.append(f"create or replace table main.{table} as {query}")
    statements.append("drop table if exists rag_publish_changes")
    statements.append("drop table rag_publish_news")
    statements += search_macros.keyword_index_sql(SNAPSHOT_STORE)
    statements += search_macros.render(SNAPSHOT_STORE, dimension)
    statements += [
        f"use {_identifier(home_catalog)}",
        f"checkpoint {STAGING_ALIAS}",
        f"detach {STAGING_ALIAS}",
        "reset disabled_compression_methods",
    ]
    required = {f"create or replace table main.{table} ": table for table in OPTIONAL_TABLES}
    plan = []
    for statement in statements:
        entry = statement if isinstance(statement, dict) else {"sql": statement}
        sql = entry["sql"]
        plan.append(
            {
                "sql": sql,
                "requires": next(
                    (table for prefix, table in required.items() if sql.startswith(prefix)), None
                ),
                "expand": entry.get("expand", False),
            }
        )
    return plan


def expand_changed_documents(sql: str, doc_ids: list[str]) -> str:
    """`sql` with CHANGED_DOCUMENTS as a condition on doc_id: a literal IN list of `doc_ids`
    up to MAX_LITERAL_DOCUMENTS, else the subquery over rag_publish_changes."""
    if len(doc_ids) > MAX_LITERAL_DOCUMENTS:
        condition = "doc_id in (select doc_id from rag_publish_changes)"
    elif doc_ids:
        condition = f"doc_id in ({', '.join(_literal(doc_id) for doc_id in doc_ids)})"
    else:
        condition = "false"
    return sql.replace(CHANGED_DOCUMENTS, condition)


def publish_plan(
    database: str,
    catalog: str,
    schema: str,
    override: str,
    row_key_json: str,
    dimension: int,
    home_catalog: str,
) -> dict:
    """The on-run-end hook's plan: the staging file (a copy of the current snapshot when it
    can be patched) and the statements that bring it up to the store in `catalog.schema`,
    returning the connection to `home_catalog` (its default database) when done."""
    paths = snapshot_paths(database, override, schema)
    patch = _patchable(paths.snapshot)
    staging, reused = _prepare_staging(paths.snapshot, patch)
    qualified = f"{_identifier(catalog)}.{_identifier(schema)}"
    sources = {
        table: query.format(schema=qualified)
        for table, query in {STORE_TABLE: STORE_QUERY, **PUBLISHED_TABLES}.items()
    }
    statements = publish_statements(
        sources,
        json.loads(row_key_json),
        dimension,
        patch,
        staging,
        home_catalog,
        published=paths.snapshot if reused else None,
    )
    return {
        "snapshot": str(paths.snapshot),
        "parquet": str(paths.parquet),
        "staging": str(staging),
        "patch": patch,
        "reused_previous": reused,
        "statements": statements,
    }


def publish_plan_json(
    database: str,
    catalog: str,
    schema: str,
    override: str | None,
    row_key_json: str,
    dimension: int,
    home_catalog: str,
) -> str:
    """publish_plan as JSON text, for the on-run-end hook (`fromjson` in Jinja)."""
    plan = publish_plan(
        database, catalog, schema, override or "", row_key_json, dimension, home_catalog
    )
    return json.dumps(plan)


def publish_swap(plan_json: str) -> str:
    """Swap the patched staging file in (see publish_plan) and refresh the Parquet copy of
    retrieval_store when the store changed or the copy is missing."""
    plan = json.loads(plan_json)
    parquet = Path(plan["parquet"])
    try:
        if not plan.get("write_parquet", True):
            # var snapshot_parquet false: no copy, and none left behind to go stale
            parquet.unlink(missing_ok=True)
            parquet = None
        message = _swap(Path(plan["staging"]), Path(plan["snapshot"]), parquet)
        if plan.get("reused_previous"):
            message += " by patching the snapshot it replaced"
        return message
    except OSError as exc:
        raise PublishError(_os_failure(f"publishing {plan['snapshot']}", exc)) from None
    except duckdb.IOException as exc:
        message = str(exc).splitlines()[0]
        raise PublishError(
            f"rag-store: publishing {plan['snapshot']} failed: {message}; "
            "the previous snapshot is unchanged"
        ) from None
    finally:
        for leftover in (Path(plan["staging"]), Path(f"{plan['staging']}.wal")):
            leftover.unlink(missing_ok=True)


def _swap(staging: Path, snapshot: Path, parquet: Path | None) -> str:
    """Swap `staging` in as `snapshot`, keeping the replaced one; refresh the Parquet copy of
    retrieval_store first (unless `parquet` is None) when the store changed or it is missing."""
    started = time.perf_counter()
    with duckdb.connect(str(staging), read_only=True) as conn:
        changed, whole = conn.execute(
            "select changed_documents, built_whole from store_info"
        ).fetchone()
        refresh_parquet = parquet is not None and (whole or changed > 0 or not parquet.exists())
        if refresh_parquet:
            parquet_staging = parquet.with_name(parquet.name + ".tmp")
            conn.execute(f"copy {STORE_TABLE} to {_literal(parquet_staging)} (format parquet)")
    if snapshot.exists():
        previous = previous_path(snapshot)
        previous.unlink(missing_ok=True)
        _keep(snapshot, previous)
    os.replace(staging, snapshot)
    if refresh_parquet:
        os.replace(parquet_staging, parquet)
    how = f"built whole: {changed} document(s)" if whole else f"{changed} document(s) changed"
    return f"published {snapshot} ({how}, {time.perf_counter() - started:.1f}s to swap)"


def _keep(snapshot: Path, previous: Path) -> None:
    """Keep `snapshot` under the name `previous`: a hard link (no bytes copied), or a copy
    where the file system has none (some network shares)."""
    try:
        os.link(snapshot, previous)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        shutil.copyfile(snapshot, previous)


def rollback(snapshot: str | os.PathLike) -> str:
    """Make the snapshot that the last publish replaced current again, exactly, and keep the
    one it replaces as the new `.previous` (a second rollback undoes the first). The next
    successful build publishes over it as usual."""
    snapshot = Path(snapshot)
    previous = previous_path(snapshot)
    if not previous.exists():
        raise PublishError(
            f"rag-store: no previous snapshot to roll back to ({previous} does not exist); "
            "one is kept from the second publish on"
        )
    staging = _staging(snapshot)
    paths = snapshot_paths("", str(snapshot))
    try:
        staging.unlink(missing_ok=True)
        os.replace(previous, staging)
        if snapshot.exists():
            _keep(snapshot, previous)
        os.replace(staging, snapshot)
        # the Parquet copy follows, where there is one (var snapshot_parquet)
        refresh_parquet = paths.parquet.exists()
        parquet_staging = paths.parquet.with_name(paths.parquet.name + ".tmp")
        with duckdb.connect(str(snapshot), read_only=True) as conn:
            if refresh_parquet:
                conn.execute(f"copy {STORE_TABLE} to {_literal(parquet_staging)} (format parquet)")
            (published_at,) = conn.execute("select published_at from store_info").fetchone()
        if refresh_parquet:
            os.replace(parquet_staging, paths.parquet)
    except OSError as exc:
        raise PublishError(_os_failure(f"rolling back {snapshot}", exc)) from None
    return f"rolled back {snapshot} to the store published at {published_at}"


def publish_export(export_dir: str | os.PathLike, snapshot: str | os.PathLike) -> str:
    """Publish a snapshot from an export directory made outside dbt (benchmarks, tools):
    Parquet files named after retrieval_store and PUBLISHED_TABLES, store_info included
    (a `row_key` is not needed: the snapshot is built whole)."""
    export = Path(export_dir)
    paths = snapshot_paths("", str(snapshot))
    staging, _ = _prepare_staging(paths.snapshot, patch=False)
    sources = {
        table: f"select * from read_parquet({_literal(export / f'{table}.parquet')})"
        for table in (STORE_TABLE, *PUBLISHED_TABLES)
        if (export / f"{table}.parquet").exists()
    }
    with duckdb.connect() as scratch:
        (dimension,) = scratch.execute(
            f"select dimension from ({sources['store_info']})"
        ).fetchone()
        load_extension(scratch, "fts")
        for statement in publish_statements(
            sources, ["doc_id"], int(dimension), False, staging, "memory"
        ):
            if statement["requires"] and statement["requires"] not in sources:
                continue
            scratch.execute(statement["sql"])
    plan = {"staging": str(staging), "snapshot": str(paths.snapshot), "parquet": str(paths.parquet)}
    return publish_swap(json.dumps(plan))
