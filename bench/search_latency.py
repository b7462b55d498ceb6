"""Top-10 vector search latency over a synthetic store shaped like retrieval_store.

Random L2-normalised 384-d float32 vectors are written to a DuckDB file, one table per size,
with the columns search cares about (chunk_id, doc_id, embedding FLOAT[384]). For every size
the same random query vectors are run through several exact (full scan) top-10 queries:

  cosine         array_cosine_similarity(...) desc  (what rag-store uses today)
  inner_product  array_inner_product(...) desc      (same ranking: every vector has norm 1)
  neg_inner      array_negative_inner_product(...) asc
  l2             array_distance(...) asc            (same ranking for unit vectors)

Every query carries the project's tie-breaker (chunk_id asc) and binds the query vector as a
parameter: by default as a '[...]' string cast to FLOAT[384]; cosine is also timed with the
vector bound as a Python list, as rag_store.search.vector_search does (that binding alone
costs tens of milliseconds, reported in its own table). --storage uncompressed adds tables
written with DuckDB's float codecs disabled. Then, at --hnsw-sizes only, an in-memory
copy gets an HNSW index from the vss extension (loaded from the local duckdb_extension_vss
package, never downloaded) and reports build time, latency and recall@10 against the exact
cosine top-10.

No figure is checked against a threshold: the script prints a markdown table.

    .venv/bin/python bench/search_latency.py                     # 10k, 100k, 1M; HNSW at 100k
    .venv/bin/python bench/search_latency.py --sizes 10000 --hnsw-sizes 10000 --queries 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

DIM = 384
TOP_K = 10
INSERT_BATCH = 100_000
CHUNKS_PER_DOC = 10


@dataclass(frozen=True)
class Method:
    name: str
    expression: str
    direction: str


METHODS = {
    "cosine": Method("cosine", "array_cosine_similarity(embedding, $q::FLOAT[384])", "desc"),
    "inner_product": Method(
        "inner_product", "array_inner_product(embedding, $q::FLOAT[384])", "desc"
    ),
    "neg_inner": Method(
        "neg_inner", "array_negative_inner_product(embedding, $q::FLOAT[384])", "asc"
    ),
    "l2": Method("l2", "array_distance(embedding, $q::FLOAT[384])", "asc"),
}

HNSW_EXPRESSION = "array_cosine_distance(embedding, $q::FLOAT[384])"


@dataclass
class Timing:
    size: int
    method: str
    p50_ms: float
    p95_ms: float
    mean_ms: float
    queries: int
    bind: str
    storage: str = "default"
    agreement: float | None = None


@dataclass
class HnswResult:
    distribution: str
    size: int
    build_s: float
    m: int
    ef_construction: int
    ef_search: int
    p50_ms: float
    p95_ms: float
    recall_at_10: float
    exact_p50_ms: float
    exact_p95_ms: float
    queries: int


@dataclass
class Report:
    settings: dict = field(default_factory=dict)
    loads: list[dict] = field(default_factory=list)
    exact: list[Timing] = field(default_factory=list)
    hnsw: list[HnswResult] = field(default_factory=list)
    binding: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- data


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / norms).astype(np.float32)


class VectorSource:
    """Deterministic unit vectors: uniform on the sphere, or grouped around centres.

    "clustered" is a rough stand-in for real sentence embeddings, whose neighbours are far
    closer than random pairs; uniform random vectors in 384 dimensions are nearly orthogonal
    to one another, which is the hardest case for an approximate index.
    """

    def __init__(self, distribution: str, size: int, seed: int):
        self.distribution = distribution
        kind = 0 if distribution == "uniform" else 1
        self.rng = np.random.default_rng([seed, size, kind])
        self.query_rng = np.random.default_rng([seed, size, kind, 1])
        self.centres = None
        if distribution == "clustered":
            count = max(10, size // 100)
            self.centres = unit_rows(self.rng.standard_normal((count, DIM)))

    def draw(self, count: int) -> np.ndarray:
        """The next `count` stored vectors."""
        return self._sample(self.rng, count)

    def queries(self, count: int) -> np.ndarray:
        """Query vectors from the same distribution, independent of the stored ones."""
        return self._sample(self.query_rng, count)

    def _sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        if self.centres is None:
            return unit_rows(rng.standard_normal((count, DIM)))
        picks = rng.integers(0, len(self.centres), count)
        noise = rng.standard_normal((count, DIM)) / np.sqrt(DIM)
        return unit_rows(self.centres[picks] + noise)


def arrow_batch(start: int, vectors: np.ndarray) -> pa.Table:
    rows = range(start, start + len(vectors))
    return pa.table(
        {
            "chunk_id": [f"doc-{i // CHUNKS_PER_DOC:07d}:{i % CHUNKS_PER_DOC}" for i in rows],
            "doc_id": [f"doc-{i // CHUNKS_PER_DOC:07d}" for i in rows],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
        }
    )


def table_name(size: int, distribution: str, storage: str = "default") -> str:
    suffix = "" if storage == "default" else f"_{storage}"
    return f"store_{distribution}_{size}{suffix}"


# DuckDB compresses FLOAT columns of a file database (ALP / ALPRD; random or embedding-like
# floats end up in ALPRD). "uncompressed" turns the float codecs off while the table is
# written, so the two storage layouts can be compared.
FLOAT_CODECS = "alp,alprd,chimp,patas"


def fill_table(conn, name: str, source: VectorSource, size: int) -> None:
    conn.execute(
        f"create or replace table {name} (chunk_id varchar, doc_id varchar, embedding FLOAT[384])"
    )
    for start in range(0, size, INSERT_BATCH):
        batch = arrow_batch(start, source.draw(min(INSERT_BATCH, size - start)))
        conn.register("vector_batch", batch)
        conn.execute(f"insert into {name} select * from vector_batch")
        conn.unregister("vector_batch")


def ensure_table(
    conn, size: int, distribution: str, seed: int, storage: str = "default"
) -> tuple[str, float | None]:
    """The table for `size`, created if missing. Returns its name and the load time."""
    name = table_name(size, distribution, storage)
    exists = conn.execute(
        "select count(*) from duckdb_tables() where table_name = ?", [name]
    ).fetchone()[0]
    if exists and conn.execute(f"select count(*) from {name}").fetchone()[0] == size:
        return name, None
    started = time.perf_counter()
    if storage == "uncompressed":
        conn.execute(f"set disabled_compression_methods = '{FLOAT_CODECS}'")
    try:
        fill_table(conn, name, VectorSource(distribution, size, seed), size)
        conn.execute("checkpoint")
    finally:
        conn.execute("reset disabled_compression_methods")
    return name, time.perf_counter() - started


def storage_summary(conn, name: str) -> str:
    rows = conn.execute(
        "select compression, count(*) from pragma_storage_info(?) "
        "where column_name = 'embedding' group by all order by 2 desc",
        [name],
    ).fetchall()
    return ", ".join(f"{codec} x{count}" for codec, count in rows)


# --------------------------------------------------------------------------- timing


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def top_k_sql(table: str, expression: str, direction: str, tie_break: bool) -> str:
    order = f"score {direction}" + (", chunk_id asc" if tie_break else "")
    return f"select chunk_id, {expression} as score from {table} order by {order} limit {TOP_K}"


def bound_vector(vector: np.ndarray, bind: str):
    """The query vector as the parameter value: a Python list, or its text form."""
    values = [float(x) for x in vector]
    if bind == "list":
        return values
    return "[" + ",".join(repr(x) for x in values) + "]"


def run_queries(conn, sql: str, queries: np.ndarray, warmup: np.ndarray, bind: str):
    """Per-query wall times in ms and the ids returned; `warmup` queries run untimed first.

    The time covers execute + fetch, including DuckDB binding the parameter; building the
    Python value happens before the clock starts.
    """
    for vector in warmup:
        conn.execute(sql, {"q": bound_vector(vector, bind)}).fetchall()
    times, results = [], []
    for vector in queries:
        bound = {"q": bound_vector(vector, bind)}
        started = time.perf_counter()
        rows = conn.execute(sql, bound).fetchall()
        times.append((time.perf_counter() - started) * 1000)
        results.append([row[0] for row in rows])
    return times, results


def overlap(found: list[list[str]], truth: list[list[str]]) -> float:
    shares = [len(set(a) & set(b)) / TOP_K for a, b in zip(found, truth, strict=True)]
    return statistics.fmean(shares)


def summarise(times: list[float]) -> tuple[float, float, float]:
    return percentile(times, 0.50), percentile(times, 0.95), statistics.fmean(times)


# --------------------------------------------------------------------------- HNSW


def vss_extension_path() -> Path:
    try:
        import duckdb_extension_vss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("duckdb_extension_vss is not installed in this environment") from exc
    base = Path(duckdb_extension_vss.__file__).parent / "extensions"
    version = duckdb.__version__
    candidates = sorted((base / f"v{version}").glob("*.duckdb_extension")) or sorted(
        base.rglob("*.duckdb_extension")
    )
    if not candidates:
        raise SystemExit(f"no .duckdb_extension file under {base}")
    return candidates[0]


def hnsw_benchmark(args, db_path: Path, size: int, distribution: str):
    conn = duckdb.connect(":memory:")
    if args.threads:
        conn.execute(f"set threads = {int(args.threads)}")
    conn.execute(f"load '{vss_extension_path()}'")
    name = table_name(size, distribution)
    on_disk = duckdb.connect(str(db_path), read_only=True)
    has_copy = on_disk.execute(
        "select count(*) from duckdb_tables() where table_name = ?", [name]
    ).fetchone()[0]
    on_disk.close()
    if has_copy:
        conn.execute(f"attach '{db_path}' as disk (read_only)")
        conn.execute(f"create table items as select * from disk.{name}")
        conn.execute("detach disk")
    else:
        fill_table(conn, "items", VectorSource(distribution, size, args.seed), size)
    source = VectorSource(distribution, size, args.seed)
    queries, warmup = source.queries(args.queries), source.queries(args.warmup)

    exact_sql = top_k_sql("items", METHODS["cosine"].expression, "desc", tie_break=True)
    exact_times, truth = run_queries(conn, exact_sql, queries, warmup, args.bind)

    options = f"metric = 'cosine', m = {args.hnsw_m}, ef_construction = {args.hnsw_ef_construction}"
    started = time.perf_counter()
    conn.execute(f"create index items_hnsw on items using hnsw (embedding) with ({options})")
    build_s = time.perf_counter() - started
    conn.execute(f"set hnsw_ef_search = {args.hnsw_ef_search}")

    hnsw_sql = f"select chunk_id from items order by {HNSW_EXPRESSION} limit {TOP_K}"
    probe = {"q": bound_vector(queries[0], args.bind)}
    plan = conn.execute(f"explain {hnsw_sql}", probe).fetchall()[0][1]
    if "HNSW" not in plan.upper():
        raise SystemExit("the HNSW index is not used by the query plan; check the vss version")
    times, found = run_queries(conn, hnsw_sql, queries, warmup, args.bind)
    conn.close()
    p50, p95, _ = summarise(times)
    exact_p50, exact_p95, _ = summarise(exact_times)
    return HnswResult(
        distribution=distribution,
        size=size,
        build_s=build_s,
        m=args.hnsw_m,
        ef_construction=args.hnsw_ef_construction,
        ef_search=args.hnsw_ef_search,
        p50_ms=p50,
        p95_ms=p95,
        recall_at_10=overlap(found, truth),
        exact_p50_ms=exact_p50,
        exact_p95_ms=exact_p95,
        queries=len(queries),
    )


# --------------------------------------------------------------------------- output


def human(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size >= 1_000 and size % 1_000 == 0:
        return f"{size // 1_000}k"
    return str(size)


def print_markdown(report: Report) -> None:
    s = report.settings
    print(
        f"\nDuckDB {s['duckdb']}, threads={s['threads']}, {s['queries']} queries per cell "
        f"(+{s['warmup']} warm-up), top-{TOP_K}, data: {s['distribution']}, seed {s['seed']}\n"
    )
    if report.loads:
        print("| N | storage | table load s | file growth MB | embedding segments by codec |")
        print("|---:|---|---:|---:|---|")
        for load in report.loads:
            print(
                f"| {human(load['size'])} | {load['storage']} | {load['load_s']:.1f} | "
                f"{load['file_growth_mb']:.0f} | {load['embedding_segments']} |"
            )
        print()
    if report.binding:
        print("| query vector bound as | `select $q::FLOAT[384]` p50 ms | p95 ms |")
        print("|---|---:|---:|")
        for b in report.binding:
            print(f"| {b['bind']} | {b['p50_ms']:.2f} | {b['p95_ms']:.2f} |")
        print()
    print(
        "| N | storage | expression | vector bound as | p50 ms | p95 ms | mean ms | "
        "same top-10 as cosine |"
    )
    print("|---:|---|---|---|---:|---:|---:|---:|")
    for t in report.exact:
        agreement = "—" if t.agreement is None else f"{t.agreement:.3f}"
        print(
            f"| {human(t.size)} | {t.storage} | {t.method} | {t.bind} | {t.p50_ms:.1f} | "
            f"{t.p95_ms:.1f} | "
            f"{t.mean_ms:.1f} | {agreement} |"
        )
    if report.hnsw:
        print()
        print(
            "| data | N | HNSW build s | M | ef_construction | ef_search | HNSW p50 ms | "
            "HNSW p95 ms | recall@10 | exact p50 ms (same in-memory table) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for h in report.hnsw:
            print(
                f"| {h.distribution} | {human(h.size)} | {h.build_s:.1f} | {h.m} | "
                f"{h.ef_construction} | {h.ef_search} | {h.p50_ms:.2f} | {h.p95_ms:.2f} | "
                f"{h.recall_at_10:.3f} | {h.exact_p50_ms:.1f} |"
            )


# --------------------------------------------------------------------------- main


def int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def word_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=30, help="timed queries per cell (>=20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed queries before timing")
    parser.add_argument("--methods", type=word_list, default=list(METHODS), help=",".join(METHODS))
    parser.add_argument("--distribution", choices=["uniform", "clustered"], default="uniform")
    parser.add_argument(
        "--storage",
        type=word_list,
        default=["default"],
        help="default (DuckDB picks the float codec, ALPRD for these vectors) and/or "
        "uncompressed (float codecs disabled while the table is written)",
    )
    parser.add_argument(
        "--bind",
        choices=["text", "list"],
        default="text",
        help="how the query vector is passed: a '[...]' string cast to FLOAT[384] (text) or a "
        "Python list (list, as rag_store.search does); the other is also timed for cosine",
    )
    parser.add_argument("--hnsw-sizes", type=int_list, default=[100_000], help="'' to skip")
    parser.add_argument(
        "--hnsw-distributions",
        type=word_list,
        default=["uniform", "clustered"],
        help="data for the HNSW runs: uniform, clustered or both",
    )
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--hnsw-ef-construction", type=int, default=128)
    parser.add_argument("--hnsw-ef-search", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = default)")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument(
        "--db", type=Path, default=None, help="keep (and reuse) the synthetic tables in this file"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    args = parser.parse_args(argv)
    if args.queries < 20:
        parser.error("--queries must be at least 20")
    if set(args.storage) - {"default", "uncompressed"}:
        parser.error("--storage takes default and/or uncompressed")
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    # cosine is the reference the others are compared with, so it always runs, first.
    args.methods = ["cosine", *(m for m in args.methods if m != "cosine")]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = None
    if args.db is None:
        workdir = Path(tempfile.mkdtemp(prefix="rag-store-search-bench-"))
        db_path = workdir / "vectors.duckdb"
    else:
        db_path = args.db
    try:
        report = run(args, db_path)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_markdown(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=2))
    return 0


def run(args, db_path: Path) -> Report:
    report = Report()
    conn = duckdb.connect(str(db_path))
    if args.threads:
        conn.execute(f"set threads = {int(args.threads)}")
    report.settings = {
        "duckdb": duckdb.__version__,
        "threads": conn.execute("select current_setting('threads')").fetchone()[0],
        "memory_limit": conn.execute("select current_setting('memory_limit')").fetchone()[0],
        "queries": args.queries,
        "warmup": args.warmup,
        "distribution": args.distribution,
        "seed": args.seed,
        "tie_break": "chunk_id asc",
        "bind": args.bind,
    }
    report.binding = binding_cost(conn, args)
    for size, storage in [(n, kind) for n in args.sizes for kind in args.storage]:
        before_mb = db_path.stat().st_size / 1e6 if db_path.exists() else 0.0
        name, load_s = ensure_table(conn, size, args.distribution, args.seed, storage)
        if load_s is not None:
            grew_mb = db_path.stat().st_size / 1e6 - before_mb
            codecs = storage_summary(conn, name)
            report.loads.append(
                {
                    "size": size,
                    "storage": storage,
                    "load_s": load_s,
                    "file_growth_mb": grew_mb,
                    "embedding_segments": codecs,
                }
            )
            log(f"loaded {size} vectors into {name} in {load_s:.1f}s ({codecs})")
        source = VectorSource(args.distribution, size, args.seed)
        queries, warmup = source.queries(args.queries), source.queries(args.warmup)
        reference = None
        other_bind = "list" if args.bind == "text" else "text"
        cells = [(m, args.bind) for m in args.methods] + [("cosine", other_bind)]
        for method_name, bind in cells:
            method = METHODS[method_name]
            sql = top_k_sql(name, method.expression, method.direction, tie_break=True)
            times, ids = run_queries(conn, sql, queries, warmup, bind)
            if reference is None and method_name == "cosine":
                reference = ids
            p50, p95, mean = summarise(times)
            agreement = None if ids is reference else overlap(ids, reference)
            report.exact.append(
                Timing(size, method_name, p50, p95, mean, len(times), bind, storage, agreement)
            )
            log(f"N={size} {storage} {method_name} ({bind}): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    conn.close()

    for distribution in args.hnsw_distributions:
        for size in args.hnsw_sizes:
            log(f"HNSW: {distribution} N={size} ...")
            result = hnsw_benchmark(args, db_path, size, distribution)
            report.hnsw.append(result)
            log(
                f"HNSW {distribution} N={size}: build {result.build_s:.1f}s, "
                f"p50 {result.p50_ms:.2f} ms, recall@10 {result.recall_at_10:.3f}"
            )
    return report


def binding_cost(conn, args) -> list[dict]:
    """What passing the query vector costs on its own, with no table involved."""
    source = VectorSource("uniform", 0, args.seed)
    queries, warmup = source.queries(args.queries), source.queries(args.warmup)
    rows = []
    for bind in ("list", "text"):
        times, _ = run_queries(conn, "select $q::FLOAT[384]", queries, warmup, bind)
        p50, p95, _ = summarise(times)
        rows.append({"bind": bind, "p50_ms": p50, "p95_ms": p95})
    return rows


def log(message: str) -> None:
    print(f"[search-bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
