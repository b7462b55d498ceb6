"""Vector and keyword search latency through the published snapshot, the way `rag-store
search` runs it, with and without access control.

search_latency.py times bare SQL expressions over a three-column table. This script times
the product path instead: a snapshot written by `rag_store.snapshot.publish_export` (the
function the on-run-end hook uses: float compression off, keyword index, search macros),
queried with `rag_store.search.vector_search` (the `search_vector` macro with its
model check, metadata filters and text columns, results fetched into Python).

The store is synthetic: N chunks of ~40 words each, ten per document, with L2-normalised
random 384-d vectors (exact search reads every vector whatever their values); one document
in five is readable only by one of ten groups (`allowed_principals`), every document has a
`team` in its metadata. The query vector is given, so the figures exclude embedding the
question (see embed_throughput.py). Keyword search is also timed the way the keyword macro
ran before access control and before the incremental keyword index (DuckDB's fts index and
match_bm25 over the whole store's statistics, built on a copy of the snapshot), for
comparison.

    .venv/bin/python bench/snapshot_search.py                       # 10k and 100k chunks
    .venv/bin/python bench/snapshot_search.py --sizes 1000000 --queries 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rag_store.duckdb_ext import load_extension
from rag_store.search import AccessControl, Filters, call_search_macro, vector_search
from rag_store.snapshot import publish_export

DIMENSION = 384
TEAMS = ("finance", "people", "platform", "sales")
KEYWORD_QUESTION = "rotate the security key after an incident"
ACCESS = AccessControl(restricted=True, macros_take_principals=True)
MODEL_ID = "synthetic/d384/l2/w256"
WORDS = [
    "invoice",
    "travel",
    "policy",
    "hotel",
    "expense",
    "receipt",
    "laptop",
    "security",
    "password",
    "rotate",
    "key",
    "deploy",
    "release",
    "rollback",
    "incident",
    "pager",
    "alert",
    "latency",
    "backup",
    "restore",
    "region",
    "quota",
    "customer",
    "refund",
    "contract",
    "renewal",
    "onboarding",
    "badge",
    "office",
    "kitchen",
    "calibration",
    "sensor",
    "firmware",
    "warranty",
    "shipping",
    "battery",
    "charger",
    "cable",
    "manual",
    "printer",
    "network",
    "vpn",
]


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIMENSION), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_export(
    export: Path, size: int, seed: int, batch: int = 100_000, restricted: bool = True
) -> None:
    """retrieval_store.parquet (the contract's columns) and store_info.parquet; with
    `restricted`, one document in five readable by one group only."""
    rng = np.random.default_rng(seed)
    vector_type = pa.list_(pa.float32(), DIMENSION)
    writer = None
    try:
        for start in range(0, size, batch):
            count = min(batch, size - start)
            index = np.arange(start, start + count)
            words = rng.integers(0, len(WORDS), size=(count, 40))
            texts = [" ".join(WORDS[w] for w in row) for row in words]
            doc_ids = [f"doc-{i // 10:07d}" for i in index]
            table = pa.table(
                {
                    "chunk_id": [f"{d}:{i % 10}" for d, i in zip(doc_ids, index, strict=True)],
                    "doc_id": doc_ids,
                    "chunk_index": pa.array(index % 10, pa.int32()),
                    "title": [f"Document {i // 10}" for i in index],
                    "heading_path": ["Section" for _ in index],
                    "chunk_text": texts,
                    "token_count": pa.array(np.full(count, 48), pa.int32()),
                    "char_start": pa.array(np.zeros(count, dtype=np.int32)),
                    "char_end": pa.array([len(t) for t in texts], pa.int32()),
                    "source_uri": [f"https://docs.example/{d}" for d in doc_ids],
                    "doc_updated_at": pa.array(
                        np.datetime64("2026-01-01") + (index % 300).astype("timedelta64[D]"),
                        pa.timestamp("us"),
                    ),
                    "page_start": pa.nulls(count, pa.int32()),
                    "page_end": pa.nulls(count, pa.int32()),
                    "page_kind": pa.nulls(count, pa.string()),
                    "metadata": [f'{{"team": "{TEAMS[i // 10 % len(TEAMS)]}"}}' for i in index],
                    "allowed_principals": pa.array(
                        [
                            [f"group:g{i // 50 % 10}"] if restricted and i // 10 % 5 == 0 else None
                            for i in index
                        ],
                        pa.list_(pa.string()),
                    ),
                    "chunk_hash": [f"{i:064x}" for i in index],
                    "content_hash": [f"{i // 10:064x}" for i in index],
                    "model_id": [MODEL_ID] * count,
                    "embedded_at": pa.array(
                        np.full(count, np.datetime64("2026-11-01T00:00:00")), pa.timestamp("us")
                    ),
                    "embedding": pa.FixedSizeListArray.from_arrays(
                        pa.array(unit_vectors(rng, count).reshape(-1)), DIMENSION
                    ).cast(vector_type),
                    "stored_at": pa.array(
                        np.full(count, np.datetime64("2026-11-01T00:00:00")), pa.timestamp("us")
                    ),
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(export / "retrieval_store.parquet", table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    info = pa.table(
        {
            "model_id": [MODEL_ID],
            "model_reference": ["synthetic"],
            "dimension": pa.array([DIMENSION], pa.int32()),
            "acl_deny_by_default": [False],
        }
    )
    pq.write_table(info, export / "store_info.parquet")


KEYWORD_RUNS = (
    ("keyword", None, Filters()),
    ("keyword as group:g1", ["group:g1"], Filters()),
    ("keyword team=sales", None, Filters(metadata_contains='{"team": "sales"}')),
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(run, calls: int, warmup: int, at_least: int) -> list[float]:
    """Milliseconds of `run(number)` for calls after the first `warmup`; each call must
    return at least `at_least` rows."""
    timings = []
    for number in range(calls):
        started = time.perf_counter()
        rows = run(number)
        elapsed = (time.perf_counter() - started) * 1000
        if len(rows) < at_least:
            raise RuntimeError(f"expected {at_least} rows, got {len(rows)}")
        if number >= warmup:
            timings.append(elapsed)
    return timings


def time_queries(conn, queries: np.ndarray, warmup: int, filters: Filters) -> list[float]:
    return timed(
        lambda n: vector_search(conn, queries[n], MODEL_ID, 10, filters), len(queries), warmup, 10
    )


def time_principals(conn, queries: np.ndarray, warmup: int, principals) -> list[float]:
    def run(number):
        return call_search_macro(
            conn,
            "vector",
            10,
            query_vector=queries[number],
            model_id=MODEL_ID,
            schema="main",
            access=ACCESS,
            principals=principals,
        )

    return timed(run, len(queries), warmup, 10)


def time_keyword(conn, runs: int, warmup: int, principals, filters: Filters) -> list[float]:
    def run(_):
        return call_search_macro(
            conn,
            "keyword",
            10,
            query_text=KEYWORD_QUESTION,
            filters=filters,
            schema="main",
            access=ACCESS,
            principals=principals,
        )

    return timed(run, warmup + runs, warmup, 1)


def time_match_bm25(conn, runs: int, warmup: int) -> list[float]:
    """The keyword search as the macro ran it before access control: match_bm25 (whole-store
    statistics) per candidate row."""
    sql = (
        "select chunk_id, score from (select chunk_id, "
        "fts_main_retrieval_store.match_bm25(chunk_id, $q) as score from retrieval_store) "
        "where score is not null order by score desc, chunk_id limit 10"
    )
    return timed(
        lambda _: conn.execute(sql, {"q": KEYWORD_QUESTION}).fetchall(), warmup + runs, warmup, 1
    )


def summary(timings: list[float]) -> dict:
    return {"p50_ms": statistics.median(timings), "p95_ms": percentile(timings, 0.95)}


def measure(size: int, args, workdir: Path) -> dict:
    import duckdb

    export = workdir / f"export-{size}"
    export.mkdir()
    started = time.perf_counter()
    write_export(export, size, args.seed)
    generate_s = time.perf_counter() - started
    snapshot = workdir / f"snapshot-{size}.duckdb"
    started = time.perf_counter()
    publish_export(export, snapshot)
    publish_s = time.perf_counter() - started
    queries = unit_vectors(np.random.default_rng(args.seed + 1), args.warmup + args.queries)
    row = {
        "chunks": size,
        "generate_s": generate_s,
        "publish_s": publish_s,
        "file_mb": snapshot.stat().st_size / 1e6,
    }
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        for label, filters in (
            ("all", Filters()),
            ("doc_id_like 'doc-00001%'", Filters(doc_id_like="doc-00001%")),
            ("updated_after 2026-10-01", Filters(updated_after="2026-10-01")),
        ):
            row[label] = summary(time_queries(conn, queries, args.warmup, filters))
        row["vector as group:g1"] = summary(
            time_principals(conn, queries, args.warmup, ["group:g1"])
        )
        load_extension(conn, "fts")
        for label, principals, filters in KEYWORD_RUNS:
            row[label] = summary(time_keyword(conn, args.queries, args.warmup, principals, filters))
    # The same searches from `rag-store serve`'s in-memory copies of the vectors and of the
    # BM25 index (a question at a time; the server also batches vector questions).
    from rag_store import server

    started = time.perf_counter()
    store = server.Store(snapshot, 1, "memory")
    row["memory indexes build_s"] = time.perf_counter() - started
    try:
        index = store.index
        row["vector (memory)"] = summary(
            timed(
                lambda n: index.hits(index.search([queries[n]], [10])[0]),
                len(queries),
                args.warmup,
                10,
            )
        )
        for label, principals, filters in KEYWORD_RUNS:
            row[f"{label} (memory)"] = summary(
                timed(
                    lambda _, p=principals, f=filters: server.memory_keyword_search(
                        store, KEYWORD_QUESTION, 10, f, p
                    ),
                    args.warmup + args.queries,
                    args.warmup,
                    1,
                )
            )
    finally:
        store.close()
    # DuckDB's own fts index (what snapshots carried before the incremental keyword index),
    # built on a copy of the same snapshot, for comparison.
    fts_copy = workdir / f"snapshot-{size}-fts.duckdb"
    shutil.copyfile(snapshot, fts_copy)
    with duckdb.connect(str(fts_copy)) as conn:
        load_extension(conn, "fts")
        started = time.perf_counter()
        conn.execute(
            "pragma create_fts_index('main.retrieval_store', 'chunk_id', 'title', "
            "'heading_path', 'chunk_text', overwrite = 1)"
        )
        row["fts index build_s"] = time.perf_counter() - started
        row["keyword: match_bm25 (before)"] = summary(
            time_match_bm25(conn, args.queries, args.warmup)
        )
    fts_copy.unlink()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    args = parser.parse_args(argv)

    import duckdb

    rows = []
    with tempfile.TemporaryDirectory(prefix="rag-store-snapshot-bench-") as scratch:
        for size in args.sizes:
            print(f"[snapshot-search] {size} chunks ...", file=sys.stderr, flush=True)
            rows.append(measure(size, args, Path(scratch)))
    print(
        f"\nduckdb {duckdb.__version__}, {args.queries} timed queries after {args.warmup} "
        "warm-ups, top-10, vector passed as text, results fetched into Python\n"
    )
    filters = [key for key in rows[0] if isinstance(rows[0][key], dict)] if rows else []
    header = " | ".join(f"{name} p50 / p95 ms" for name in filters)
    print(f"| chunks | snapshot MB | publish s | {header} |")
    print("|---:|---:|---:|" + "---:|" * len(filters))
    for row in rows:
        cells = " | ".join(
            f"{row[name]['p50_ms']:.1f} / {row[name]['p95_ms']:.1f}" for name in filters
        )
        print(f"| {row['chunks']:,} | {row['file_mb']:.0f} | {row['publish_s']:.1f} | {cells} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
