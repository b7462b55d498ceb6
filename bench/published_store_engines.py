"""Published-store engines side by side: today's DuckDB snapshot file against DuckLake
(SQLite catalog, Parquet data), before choosing a format that publishes in O(changed
documents) with snapshot isolation and time travel.

For each size the same synthetic store (bench/snapshot_search.py's `write_export`: random
unit 384-d vectors, ~40-word texts, ten chunks per document, metadata, principals) is
loaded into

- **duckdb-file**: one DuckDB file built the way `publish_snapshot` builds the snapshot
  (float compression off, `embedding FLOAT[384]`), with a BM25 postings layout instead of
  the fts index (fts cannot be patched, and DuckLake cannot carry it);
- **ducklake**: `ATTACH 'ducklake:sqlite:<dir>/catalog.sqlite' (DATA_PATH '<dir>/data')`,
  the same tables (DuckLake has no fixed-size ARRAY type: `embedding` is `FLOAT[]`).

Both hold `retrieval_store`, `keyword_terms(chunk_id, term, tf)` (sorted by term, so row
groups prune) and `keyword_docs(chunk_id, len)`. Measured, interleaved query by query:

1. exact vector top-10 (`order by array_inner_product(embedding, $q) desc limit 10`), from a
   separate read-only reader connection, p50/p99;
2. keyword BM25 in SQL over the postings (k1 1.2, b 0.75), p50/p99;
3. publishing a delta of `--delta-docs` documents (their chunks deleted and re-inserted,
   with postings): DuckLake in one transaction (one snapshot) against "copy the file, apply,
   checkpoint, rename"; wall time, bytes written (write syscalls) and on-disk growth; today's
   full rebuild (`rag_store.snapshot.publish_export`) at the same size beside them;
4. isolation: a reader process queries in a loop while the writer commits `--deltas` deltas;
   counts failed queries and half-applied states (chunk counts / versions of the changed
   documents, chunks vs postings, all in one query);
5. time travel: a query `AT (VERSION => n)`, a rollback to n as a new snapshot (the changed
   documents only, found with `table_changes`, and the whole table), and for the file the
   equivalent (keep the replaced files by hard link, roll back by rename).

    .venv/bin/python bench/published_store_engines.py                    # 10k and 100k
    .venv/bin/python bench/published_store_engines.py --chunks 10000 --queries 20
    .venv/bin/python bench/published_store_engines.py --json bench/results/engines.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from run_benchmarks import cpu_model
from snapshot_search import (
    DIMENSION,
    WORDS,
    int_list,
    percentile,
    unit_vectors,
    write_export,
)

ENGINES = ("duckdb-file", "ducklake")
NO_FLOAT_COMPRESSION = "set disabled_compression_methods = 'alp,alprd,chimp,patas'"
TOKEN_SPLIT = "[^a-z0-9]+"
# no progress bar on stdout, where the tables go
QUIET = "set enable_progress_bar = false"

# Postings from chunk texts, one SQL for both engines (`{source}` has chunk_id, chunk_text).
POSTINGS_SQL = """
select chunk_id, term, count(*)::integer as tf
from (
    select chunk_id, unnest(regexp_split_to_array(lower(chunk_text), '{split}')) as term
    from {source}
)
where term <> ''
group by chunk_id, term
"""
DOC_LENGTHS_SQL = """
select chunk_id, len(list_filter(regexp_split_to_array(lower(chunk_text), '{split}'),
                                 t -> t <> ''))::integer as len
from {source}
"""

# BM25 (k1 1.2, b 0.75, DuckDB's `log` as the project's search_keyword macro) over postings.
BM25_SQL = """
with
query_terms as (select unnest($terms::varchar[]) as term),
stats as (select count(*) as num_docs, avg(len) as avgdl from {p}keyword_docs),
df as (
    select t.term, count(*) as df
    from {p}keyword_terms as t
    where t.term in (select term from query_terms)
    group by t.term
),
scores as (
    select
        t.chunk_id,
        sum(
            log((stats.num_docs - df.df + 0.5) / (df.df + 0.5) + 1)
            * t.tf * (1.2 + 1)
            / (t.tf + 1.2 * (1 - 0.75 + 0.75 * d.len / stats.avgdl))
        ) as score
    from {p}keyword_terms as t
    inner join df on t.term = df.term
    inner join {p}keyword_docs as d on t.chunk_id = d.chunk_id
    cross join stats
    group by t.chunk_id
)
select chunk_id, score from scores order by score desc, chunk_id limit 10
"""

# What a reader checks in one query (one snapshot): the changed documents' chunk count, how
# many delta versions their titles carry, and how many of their chunks have postings.
CONSISTENCY_SQL = """
select
    (select count(*) from {p}retrieval_store{at} where doc_id in ({docs})),
    (select count(distinct split_part(title, ' ', 1)) from {p}retrieval_store{at}
     where doc_id in ({docs})),
    (select max(split_part(title, ' ', 1)) from {p}retrieval_store{at} where doc_id in ({docs})),
    (select count(*) from {p}keyword_docs{at} where split_part(chunk_id, ':', 1) in ({docs}))
"""


# ------------------------------------------------------------------ helpers


def log(message: str) -> None:
    print(f"[engines] {message}", file=sys.stderr, flush=True)


def summary(timings: list[float]) -> dict:
    return {
        "p50_ms": statistics.median(timings),
        "p99_ms": percentile(timings, 0.99),
        "n": len(timings),
    }


def io_counters() -> dict:
    """This process's I/O: wchar (bytes given to write-like syscalls) and write_bytes
    (bytes dirtied in the page cache for storage)."""
    values = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        values[key] = int(value)
    return values


def disk_bytes(path: Path) -> int:
    """Allocated bytes of a file or of every file under a directory."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def tokenize(text: str) -> list[str]:
    return [t for t in re.split(TOKEN_SPLIT, text.lower()) if t]


def sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def load(conn, *names: str) -> None:
    from rag_store.duckdb_ext import load_extension

    for name in names:
        load_extension(conn, name)


# ------------------------------------------------------------------ the two engines


class DuckDBFile:
    """The snapshot file: rebuilt or patched by copy + rename; readers attach it read-only."""

    name = "duckdb-file"
    prefix = "snap."

    def __init__(self, root: Path):
        self.root = root
        self.path = root / "snapshot.duckdb"
        self.versions: list[Path] = []

    def build(self, export: Path) -> None:
        import duckdb

        source = f"read_parquet('{export / 'retrieval_store.parquet'}')"
        with duckdb.connect(str(self.path)) as conn:
            conn.execute(QUIET)
            conn.execute(NO_FLOAT_COMPRESSION)
            conn.execute(
                "create table retrieval_store as select * replace "
                f"(embedding::float[{DIMENSION}] as embedding) from {source}"
            )
            create_postings(conn, "", source)
            conn.execute("checkpoint")

    def reader(self):
        import duckdb

        conn = duckdb.connect()
        conn.execute(QUIET)
        conn.execute(f"attach '{self.path}' as snap (read_only)")
        return conn

    def vector_sql(self) -> str:
        return (
            "select chunk_id, array_inner_product(embedding, $q::float[384]) as score "
            "from snap.retrieval_store order by score desc, chunk_id limit 10"
        )

    def publish_delta(self, delta: Path, docs: list[str], keep_version: bool) -> None:
        """Copy, apply the delta in one transaction, checkpoint, rename over the snapshot."""
        import duckdb

        staging = self.path.with_name(self.path.name + ".tmp")
        shutil.copyfile(self.path, staging)
        with duckdb.connect(str(staging)) as conn:
            conn.execute(QUIET)
            conn.execute(NO_FLOAT_COMPRESSION)
            conn.execute("begin")
            apply_delta(conn, "", delta, docs, f"::float[{DIMENSION}]")
            conn.execute("commit")
            conn.execute("checkpoint")
        if keep_version:
            kept = self.root / f"snapshot.v{len(self.versions)}.duckdb"
            os.link(self.path, kept)
            self.versions.append(kept)
        os.replace(staging, self.path)

    def rollback(self, version: int) -> None:
        """Make a kept version current again: a hard link of it renamed over the snapshot."""
        staging = self.path.with_name(self.path.name + ".rollback")
        staging.unlink(missing_ok=True)
        os.link(self.versions[version], staging)
        os.replace(staging, self.path)


class DuckLake:
    """A DuckLake: SQLite catalog file, Parquet data directory."""

    name = "ducklake"
    prefix = "lake."

    def __init__(self, root: Path, parquet_compression: str):
        self.root = root
        self.catalog = root / "catalog.sqlite"
        self.data = root / "data"
        self.parquet_compression = parquet_compression

    def attach_sql(self, read_only: bool = False, extra: str = "") -> str:
        options = [f"DATA_PATH '{self.data}/'"]
        if read_only:
            options.append("READ_ONLY")
        if extra:
            options.append(extra)
        return f"attach 'ducklake:sqlite:{self.catalog}' as lake ({', '.join(options)})"

    def connect(self, read_only: bool = False):
        import duckdb

        conn = duckdb.connect()
        conn.execute(QUIET)
        load(conn, "sqlite", "ducklake")
        conn.execute(self.attach_sql(read_only))
        return conn

    def build(self, export: Path) -> None:
        source = f"read_parquet('{export / 'retrieval_store.parquet'}')"
        conn = self.connect()
        try:
            conn.execute(
                f"call lake.set_option('parquet_compression', '{self.parquet_compression}')"
            )
            conn.execute("begin")
            conn.execute(
                "create table lake.retrieval_store as select * replace "
                "(embedding::float[] as embedding) from " + source
            )
            create_postings(conn, "lake.", source)
            conn.execute("commit")
        finally:
            conn.close()

    def reader(self):
        return self.connect(read_only=True)

    def vector_sql(self) -> str:
        return (
            "select chunk_id, list_inner_product(embedding, $q::float[]) as score "
            "from lake.retrieval_store order by score desc, chunk_id limit 10"
        )

    def publish_delta(self, conn, delta: Path, docs: list[str]) -> None:
        conn.execute("begin")
        apply_delta(conn, "lake.", delta, docs, "::float[]")
        conn.execute("commit")

    def current_version(self, conn) -> int:
        return conn.execute("select max(snapshot_id) from lake.snapshots()").fetchone()[0]


def create_postings(conn, prefix: str, source: str) -> None:
    conn.execute(
        f"create table {prefix}keyword_terms as "
        + POSTINGS_SQL.format(split=TOKEN_SPLIT, source=source)
        + " order by term, chunk_id"
    )
    conn.execute(
        f"create table {prefix}keyword_docs as "
        + DOC_LENGTHS_SQL.format(split=TOKEN_SPLIT, source=source)
    )


def apply_delta(conn, prefix: str, delta: Path, docs: list[str], vector_cast: str) -> None:
    """Delete the documents' chunks and postings, insert the new ones (same transaction)."""
    source = f"read_parquet('{delta}')"
    doc_list = sql_list(docs)
    old_chunks = f"select chunk_id from {prefix}retrieval_store where doc_id in ({doc_list})"
    conn.execute(f"delete from {prefix}keyword_terms where chunk_id in ({old_chunks})")
    conn.execute(f"delete from {prefix}keyword_docs where chunk_id in ({old_chunks})")
    conn.execute(f"delete from {prefix}retrieval_store where doc_id in ({doc_list})")
    conn.execute(
        f"insert into {prefix}retrieval_store select * replace "
        f"(embedding{vector_cast} as embedding) from {source}"
    )
    conn.execute(
        f"insert into {prefix}keyword_terms "
        + POSTINGS_SQL.format(split=TOKEN_SPLIT, source=source)
    )
    conn.execute(
        f"insert into {prefix}keyword_docs "
        + DOC_LENGTHS_SQL.format(split=TOKEN_SPLIT, source=source)
    )


def write_delta(path: Path, export: Path, docs: list[str], version: int, seed: int) -> None:
    """The documents' rows from the export with new texts, vectors and a versioned title."""
    table = pq.read_table(export / "retrieval_store.parquet", filters=[("doc_id", "in", docs)])
    rng = np.random.default_rng(seed)
    count = table.num_rows
    words = rng.integers(0, len(WORDS), size=(count, 40))
    texts = [" ".join(WORDS[w] for w in row) for row in words]
    vectors = pa.FixedSizeListArray.from_arrays(
        pa.array(unit_vectors(rng, count).reshape(-1)), DIMENSION
    ).cast(table.schema.field("embedding").type)
    titles = [f"v{version:03d} {d}" for d in table.column("doc_id").to_pylist()]
    for name, column in (("chunk_text", texts), ("title", titles), ("embedding", vectors)):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), pa.array(column))
    pq.write_table(table, path)


# ------------------------------------------------------------------ 1 and 2: search latency


def search_latency(engines, queries: np.ndarray, keyword_queries, warmup: int) -> dict:
    """Vector and BM25 queries, alternating engines query by query (and which goes first)."""
    readers = {engine.name: engine.reader() for engine in engines}
    timings = {(e.name, kind): [] for e in engines for kind in ("vector", "keyword")}
    answers = {e.name: [] for e in engines}
    try:
        for number, vector in enumerate(queries):
            order = engines if number % 2 == 0 else engines[::-1]
            text = vector_text(vector)
            for engine in order:
                conn = readers[engine.name]
                started = time.perf_counter()
                rows = conn.execute(engine.vector_sql(), {"q": text}).fetchall()
                elapsed = (time.perf_counter() - started) * 1000
                if number >= warmup:
                    timings[(engine.name, "vector")].append(elapsed)
                answers[engine.name].append([r[0] for r in rows])
            terms = keyword_queries[number % len(keyword_queries)]
            for engine in order:
                conn = readers[engine.name]
                sql = BM25_SQL.format(p=engine.prefix)
                started = time.perf_counter()
                rows = conn.execute(sql, {"terms": terms}).fetchall()
                elapsed = (time.perf_counter() - started) * 1000
                if len(rows) < 10:
                    raise RuntimeError(f"{engine.name}: BM25 returned {len(rows)} rows")
                if number >= warmup:
                    timings[(engine.name, "keyword")].append(elapsed)
    finally:
        for conn in readers.values():
            conn.close()
    names = [e.name for e in engines]
    same = sum(a == b for a, b in zip(answers[names[0]], answers[names[1]], strict=True))
    result = {f"{name} {kind}": summary(values) for (name, kind), values in timings.items()}
    result["same vector top-10"] = f"{same}/{len(queries)}"
    return result


# ------------------------------------------------------------------ 4: reader process


def reader_loop(kind: str, root: str, docs: list[str], stop, results, vector: str) -> None:
    """Query in a loop until `stop` is set; report failures and what was seen."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    root_path = Path(root)
    engine = DuckDBFile(root_path) if kind == "duckdb-file" else DuckLake(root_path, "")
    doc_list = sql_list(docs)
    check = CONSISTENCY_SQL.format(p=engine.prefix, at="", docs=doc_list)
    seen, failures, errors, bad, queries, reopen = set(), 0, {}, [], 0, 0
    expected = 10 * len(docs)
    conn, stamp = None, None
    latencies = []
    while not stop.is_set():
        try:
            if kind == "duckdb-file":
                current = os.stat(engine.path).st_ino
                if conn is None or current != stamp:
                    # as rag-store serve does: a new file (inode) is attached anew
                    if conn is not None:
                        conn.close()
                    conn, stamp = engine.reader(), current
                    reopen += 1
            elif conn is None:
                conn = engine.reader()
            started = time.perf_counter()
            count, versions, title, postings = conn.execute(check).fetchone()
            conn.execute(engine.vector_sql(), {"q": vector}).fetchall()
            latencies.append((time.perf_counter() - started) * 1000)
            queries += 1
            seen.add(title)
            if count != expected or versions != 1 or postings != expected:
                bad.append([count, versions, postings])
        except Exception as exc:  # every failure is counted, whatever it is
            failures += 1
            message = str(exc).splitlines()[0][:160]
            errors[message] = errors.get(message, 0) + 1
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            time.sleep(0.01)
    if conn is not None:
        conn.close()
    results.put(
        {
            "queries": queries,
            "failed": failures,
            "errors": errors,
            "half_applied": len(bad),
            "half_applied_examples": bad[:5],
            "versions_seen": len(seen),
            "reopened": reopen,
            "query_p50_ms": statistics.median(latencies) if latencies else None,
        }
    )


def isolation(engine, export: Path, work: Path, docs, deltas: int, seed: int, lake_conn):
    """`deltas` publishes of the same documents while a reader process checks them."""
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    vector = vector_text(unit_vectors(np.random.default_rng(seed), 1)[0])
    process = context.Process(
        target=reader_loop, args=(engine.name, str(engine.root), docs, stop, results, vector)
    )
    process.start()
    time.sleep(2.0)  # the reader is up and querying
    publish_ms, writer_errors = [], {}
    for number in range(deltas):
        delta = work / f"iso-{engine.name}-{number}.parquet"
        write_delta(delta, export, docs, 100 + number, seed + number)
        started = time.perf_counter()
        for attempt in range(5):
            try:
                if engine.name == "ducklake":
                    engine.publish_delta(lake_conn, delta, docs)
                else:
                    engine.publish_delta(delta, docs, keep_version=False)
                break
            except Exception as exc:
                message = str(exc).splitlines()[0][:160]
                writer_errors[message] = writer_errors.get(message, 0) + 1
                if engine.name == "ducklake":
                    lake_conn.execute("rollback")
                if attempt == 4:
                    raise
        publish_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    outcome = results.get(timeout=120)
    process.join(timeout=60)
    outcome["writer_publish_p50_ms"] = statistics.median(publish_ms)
    outcome["writer_errors"] = writer_errors
    return outcome


# ------------------------------------------------------------------ one size


def measure(size: int, args, scratch: Path) -> dict:
    import duckdb

    row: dict = {"chunks": size}
    work = scratch / f"n{size}"
    export = work / "export"
    export.mkdir(parents=True)
    log(f"{size}: writing the synthetic export")
    write_export(export, size, args.seed)

    # today's publish: a whole new snapshot file (tables, fts index, macros)
    log(f"{size}: today's full publish")
    row.update(todays_publish(export, work / "today"))

    engines = []
    file_engine = DuckDBFile(work / "file")
    file_engine.root.mkdir()
    lake = DuckLake(work / "lake", args.parquet_compression)
    lake.root.mkdir()
    for engine in (file_engine, lake):
        log(f"{size}: building {engine.name}")
        before = io_counters()
        started = time.perf_counter()
        engine.build(export)
        row[f"{engine.name} full build s"] = time.perf_counter() - started
        row[f"{engine.name} full build MB written"] = (
            io_counters()["wchar"] - before["wchar"]
        ) / 1e6
        row[f"{engine.name} size MB"] = disk_bytes(engine.root) / 1e6
        engines.append(engine)

    # 1 + 2: search latency, interleaved
    log(f"{size}: search latency")
    rng = np.random.default_rng(args.seed + 1)
    queries = unit_vectors(rng, args.warmup + args.queries)
    keyword_queries = [
        list(rng.choice(WORDS, size=int(rng.integers(2, 5)), replace=False)) for _ in range(50)
    ]
    row["search"] = search_latency(engines, queries, keyword_queries, args.warmup)

    # 3: one delta of --delta-docs documents, several rounds, alternating engines
    log(f"{size}: delta publishes")
    n_docs = size // 10
    rng = np.random.default_rng(args.seed + 2)
    lake_conn = lake.connect()
    delta_rows = {e.name: [] for e in engines}
    touched: set[str] = set()
    try:
        for round_ in range(args.delta_rounds):
            docs = [f"doc-{d:07d}" for d in rng.choice(n_docs, args.delta_docs, replace=False)]
            touched.update(docs)
            delta = work / f"delta-{round_}.parquet"
            write_delta(delta, export, docs, round_, args.seed + 10 + round_)
            order = engines if round_ % 2 == 0 else engines[::-1]
            for engine in order:
                before_disk = disk_bytes(engine.root)
                before = io_counters()
                started = time.perf_counter()
                if engine is lake:
                    lake.publish_delta(lake_conn, delta, docs)
                else:
                    file_engine.publish_delta(delta, docs, keep_version=True)
                elapsed = time.perf_counter() - started
                after = io_counters()
                delta_rows[engine.name].append(
                    {
                        "s": elapsed,
                        "wchar_mb": (after["wchar"] - before["wchar"]) / 1e6,
                        "disk_growth_mb": (disk_bytes(engine.root) - before_disk) / 1e6,
                    }
                )
        row["delta chunks"] = pq.read_metadata(delta).num_rows
        for name, values in delta_rows.items():
            row[f"{name} delta"] = {
                "p50_s": statistics.median(v["s"] for v in values),
                "max_s": max(v["s"] for v in values),
                "written_mb": statistics.median(v["wchar_mb"] for v in values),
                "disk_growth_mb": statistics.median(v["disk_growth_mb"] for v in values),
                "rounds": len(values),
            }
        lake_version_after_deltas = lake.current_version(lake_conn)
        lake_files = sum(1 for p in lake.data.rglob("*") if p.is_file())
        row["ducklake files after deltas"] = lake_files
        # kept file versions cost a whole file each (hard links keep the replaced inodes)
        row["duckdb-file kept versions MB"] = disk_bytes(file_engine.root) / 1e6
    finally:
        lake_conn.close()

    # 4: isolation
    rng = np.random.default_rng(args.seed + 3)
    # documents no earlier delta touched: each starts as one version, ten chunks
    untouched = [d for d in range(n_docs) if f"doc-{d:07d}" not in touched]
    chosen = rng.choice(untouched, args.delta_docs, replace=False)
    iso_docs = [f"doc-{d:07d}" for d in sorted(chosen)]
    lake_conn = lake.connect()
    try:
        for engine in engines:
            log(f"{size}: isolation, {engine.name}")
            row[f"{engine.name} isolation"] = isolation(
                engine, export, work, iso_docs, args.deltas, args.seed + 100, lake_conn
            )
        version_before_iso = lake_version_after_deltas

        # 5: time travel
        log(f"{size}: time travel")
        row["time travel"] = time_travel(
            lake, lake_conn, file_engine, version_before_iso, iso_docs, queries, args
        )
    finally:
        lake_conn.close()
    del duckdb
    shutil.rmtree(work, ignore_errors=True)
    return row


def todays_publish(export: Path, work: Path) -> dict:
    """Time rag_store.snapshot.publish_export as committed (HEAD), in a subprocess: the
    working tree's src/ may be mid-edit. publish_export consumes its export directory, so
    it gets a copy."""
    import subprocess

    work.mkdir()
    shutil.copytree(export, work / "export")
    repo = Path(__file__).resolve().parent.parent
    src = work / "head"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "HEAD", "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    code = (
        "import sys, time; from rag_store.snapshot import publish_export; "
        "t = time.perf_counter(); publish_export(sys.argv[1], sys.argv[2]); "
        "print(time.perf_counter() - t)"
    )
    snapshot = work / "snapshot.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", code, str(work / "export"), str(snapshot)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src / "src")},
    )
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["?"])[-1]
        log(f"today's publish failed: {message}")
        result = {"today full publish s": None, "today snapshot MB": None, "error": message}
    else:
        result = {
            "today full publish s": float(done.stdout.strip().splitlines()[-1]),
            "today snapshot MB": snapshot.stat().st_size / 1e6,
        }
    shutil.rmtree(work)
    return result


def time_travel(lake, lake_conn, file_engine, version: int, docs, queries, args) -> dict:
    """Reads AT (VERSION => n) against current, and rollbacks to n as a new snapshot."""
    out: dict = {"version": version}
    reader = lake.reader()
    doc_list = sql_list(docs)
    try:
        current = lake.current_version(reader)
        out["current"] = current
        vector_at = lake.vector_sql().replace(
            "lake.retrieval_store", f"lake.retrieval_store AT (VERSION => {version})"
        )
        check_at = CONSISTENCY_SQL.format(
            p="lake.", at=f" AT (VERSION => {version})", docs=doc_list
        )
        timings = {"current": [], "at": []}
        for number, vector in enumerate(queries):
            text = vector_text(vector)
            for label, sql in (("current", lake.vector_sql()), ("at", vector_at)):
                started = time.perf_counter()
                reader.execute(sql, {"q": text}).fetchall()
                if number >= args.warmup:
                    timings[label].append((time.perf_counter() - started) * 1000)
        out["ducklake vector current"] = summary(timings["current"])
        out["ducklake vector AT (VERSION)"] = summary(timings["at"])
        out["state at version"] = list(reader.execute(check_at).fetchone())
    finally:
        reader.close()

    # rollback of the changed documents only, found with the change feed
    fingerprint = (
        "select count(*), bit_xor(hash(chunk_id, title, chunk_text)) from lake.retrieval_store{at}"
    )
    target = lake_conn.execute(fingerprint.format(at=f" AT (VERSION => {version})")).fetchone()
    started = time.perf_counter()
    lake_conn.execute("begin")
    changed = [
        r[0]
        for r in lake_conn.execute(
            "select distinct doc_id from lake.table_changes('retrieval_store', $a, $b)",
            {"a": version + 1, "b": current},
        ).fetchall()
    ]
    at = f" AT (VERSION => {version})"
    changed_list = sql_list(changed)
    chunks_then = f"select chunk_id from lake.retrieval_store{at} where doc_id in ({changed_list})"
    chunks_now = f"select chunk_id from lake.retrieval_store where doc_id in ({changed_list})"
    for table in ("keyword_terms", "keyword_docs"):
        lake_conn.execute(f"delete from lake.{table} where chunk_id in ({chunks_now})")
        lake_conn.execute(
            f"insert into lake.{table} select * from lake.{table}{at} "
            f"where chunk_id in ({chunks_then})"
        )
    lake_conn.execute(f"delete from lake.retrieval_store where doc_id in ({changed_list})")
    lake_conn.execute(
        f"insert into lake.retrieval_store select * from lake.retrieval_store{at} "
        f"where doc_id in ({changed_list})"
    )
    lake_conn.execute("commit")
    out["ducklake rollback (changed docs) s"] = time.perf_counter() - started
    out["ducklake rollback changed docs"] = len(changed)
    out["ducklake rollback matches version"] = (
        lake_conn.execute(fingerprint.format(at="")).fetchone() == target
    )

    # rollback of the whole table (O(store)): what a naive "restore version n" costs
    started = time.perf_counter()
    lake_conn.execute("begin")
    for table in ("retrieval_store", "keyword_terms", "keyword_docs"):
        lake_conn.execute(f"delete from lake.{table}")
        lake_conn.execute(f"insert into lake.{table} select * from lake.{table}{at}")
    lake_conn.execute("commit")
    out["ducklake rollback (whole tables) s"] = time.perf_counter() - started

    # the file: kept versions (hard links to replaced files), rollback by rename
    started = time.perf_counter()
    file_engine.rollback(0)
    out["duckdb-file rollback (rename kept file) ms"] = (time.perf_counter() - started) * 1000
    return out


# ------------------------------------------------------------------ report


def fmt(cell: dict) -> str:
    return f"{cell['p50_ms']:.1f} / {cell['p99_ms']:.1f}"


def report(rows: list[dict], args) -> None:
    import duckdb

    print(
        f"\nCPU {cpu_model()} ({os.cpu_count()} logical CPUs), shared machine, "
        f"load average {os.getloadavg()[0]:.2f}; duckdb {duckdb.__version__}; "
        f"{args.queries} timed queries after {args.warmup} warm-ups, interleaved; "
        f"DuckLake: SQLite catalog, Parquet '{args.parquet_compression}'\n"
    )
    print(
        "| chunks | engine | size MB | full build s | vector p50 / p99 ms | "
        "BM25 p50 / p99 ms | delta publish p50 (max) s | delta written MB | "
        "delta disk growth MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        for name in ENGINES:
            delta = row[f"{name} delta"]
            print(
                f"| {row['chunks']:,} | {name} | {row[f'{name} size MB']:.0f} | "
                f"{row[f'{name} full build s']:.2f} | {fmt(row['search'][f'{name} vector'])} | "
                f"{fmt(row['search'][f'{name} keyword'])} | "
                f"{delta['p50_s']:.3f} ({delta['max_s']:.3f}) | {delta['written_mb']:.1f} | "
                f"{delta['disk_growth_mb']:.1f} |"
            )
        if row["today full publish s"] is not None:
            print(
                f"| {row['chunks']:,} | today's publish_export (HEAD), full rebuild | "
                f"{row['today snapshot MB']:.0f} | {row['today full publish s']:.2f} | | | "
                f"{row['today full publish s']:.3f} | {row['today snapshot MB']:.0f} | |"
            )
    print("\nDelta: chunks per delta " + ", ".join(str(r["delta chunks"]) for r in rows))
    print(
        "\n| chunks | engine | reader queries | failed | half-applied | versions seen | "
        "reader p50 ms | writer publish p50 ms | writer errors | reader errors |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    for row in rows:
        for name in ENGINES:
            iso = row[f"{name} isolation"]
            print(
                f"| {row['chunks']:,} | {name} | {iso['queries']} | {iso['failed']} | "
                f"{iso['half_applied']} | {iso['versions_seen']} | {iso['query_p50_ms']:.1f} | "
                f"{iso['writer_publish_p50_ms']:.0f} | {iso['writer_errors'] or ''} | "
                f"{iso['errors'] or ''} |"
            )
    print(
        "\n| chunks | vector current p50 ms | vector AT (VERSION) p50 ms | "
        "rollback changed docs s | rollback whole tables s | file rollback (rename) ms | "
        "ducklake files after deltas | file versions kept MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        tt = row["time travel"]
        print(
            f"| {row['chunks']:,} | {tt['ducklake vector current']['p50_ms']:.1f} | "
            f"{tt['ducklake vector AT (VERSION)']['p50_ms']:.1f} | "
            f"{tt['ducklake rollback (changed docs) s']:.3f} "
            f"({tt['ducklake rollback changed docs']} docs, "
            f"matches: {tt['ducklake rollback matches version']}) | "
            f"{tt['ducklake rollback (whole tables) s']:.2f} | "
            f"{tt['duckdb-file rollback (rename kept file) ms']:.2f} | "
            f"{row['ducklake files after deltas']} | {row['duckdb-file kept versions MB']:.0f} |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int_list, default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--delta-docs", type=int, default=10)
    parser.add_argument("--delta-rounds", type=int, default=6)
    parser.add_argument("--deltas", type=int, default=20, help="publishes in the isolation test")
    parser.add_argument("--parquet-compression", default="uncompressed")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="rag-store-engines-", dir=args.workdir) as scratch:
        for size in args.chunks:
            rows.append(measure(size, args, Path(scratch)))
    report(rows, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
        args.json.write_text(json.dumps({"machine": meta, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
