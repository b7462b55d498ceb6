"""Search latency on stores a real `dbt build` published (e.g. `build_benchmark.py
--workdir DIR` keeps them as DIR/docs-N/store_snapshot.duckdb), in every mode.

snapshot_search.py times synthetic snapshots; this script takes published ones as they
are, embeds each question with the embedder the snapshot records (the hash embedder of a
simulation costs nothing), and times top-10 searches per question through the search
macros (`rag-store search`'s path) and, where the vectors fit, through `rag-store serve`'s
in-memory indexes, one question at a time, after warm-ups.

    .venv/bin/python bench/store_search.py --db DIR/docs-10000/store_snapshot.duckdb \\
        --db DIR/docs-1000000/store_snapshot.duckdb
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import OBJECTS, SYSTEMS, VERBS
from snapshot_search import summary, timed

from rag_store import search, server
from rag_store.embedding import embed_batch


def questions(count: int) -> list[str]:
    """Questions in the synthetic corpus's words (bench/corpus.py), so keywords match."""
    rng = random.Random(20261208)
    return [
        f"how do I {rng.choice(VERBS)} {rng.choice(OBJECTS)} of the {rng.choice(SYSTEMS)}"
        for _ in range(count)
    ]


def measure(path: Path, count: int, warmup: int, memory_limit_gib: float) -> dict:
    started = time.perf_counter()
    store = server.Store(path, None, "sql")
    row = {"snapshot": str(path), "chunks": store.chunks, "open_s": time.perf_counter() - started}
    texts = questions(warmup + count)
    vectors = embed_batch(texts, store.model_reference)
    cursor = store.cursor()

    def macro(mode):
        def run(number):
            return search.call_search_macro(
                cursor,
                mode,
                10,
                query_text=texts[number],
                query_vector=vectors[number].tolist(),
                model_id=store.model_id,
                schema=store.schema,
                access=store.access,
                principals=None,
            )

        return run

    try:
        for mode in ("vector", "keyword", "hybrid"):
            row[f"{mode} (macro)"] = summary(timed(macro(mode), len(texts), warmup, 1))
    finally:
        store.close()
    if store.chunks * store.dimension * 4 > memory_limit_gib * 2**30:
        return row
    started = time.perf_counter()
    store = server.Store(path, None, "memory")
    row["memory indexes build_s"] = time.perf_counter() - started
    try:
        index = store.index
        row["vector (memory)"] = summary(
            timed(lambda n: index.hits(index.search([vectors[n]], [10])[0]), len(texts), warmup, 1)
        )
        row["keyword (memory)"] = summary(
            timed(
                lambda n: server.memory_keyword_search(store, texts[n], 10, search.Filters(), None),
                len(texts),
                warmup,
                1,
            )
        )
    finally:
        store.close()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, action="append", required=True)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--memory-limit-gib", type=float, default=4.0, help="skip the in-memory indexes above"
    )
    args = parser.parse_args(argv)
    server._mark_pandas_absent()
    rows = []
    for path in args.db:
        print(f"[store-search] {path} ...", file=sys.stderr, flush=True)
        rows.append(measure(path, args.queries, args.warmup, args.memory_limit_gib))
        print(f"[store-search] {rows[-1]}", file=sys.stderr, flush=True)
    labels = [key for row in rows for key, value in row.items() if isinstance(value, dict)]
    labels = list(dict.fromkeys(labels))
    print(f"\ntop-10, {args.queries} questions after {args.warmup} warm-ups, p50 / p95 ms\n")
    print("| chunks | " + " | ".join(labels) + " |")
    print("|---:|" + "---:|" * len(labels))
    for row in rows:
        cells = [
            f"{row[label]['p50_ms']:.1f} / {row[label]['p95_ms']:.1f}" if label in row else "—"
            for label in labels
        ]
        print(f"| {row['chunks']:,} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
