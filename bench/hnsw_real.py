"""An HNSW index (DuckDB vss) on real vectors: recall against exact search and what it does
to retrieval quality, on a store built by `rag-store eval --keep DIR`.

search_latency.py measures HNSW on synthetic vectors, where recall swings from 0.08
(uniform) to 1.0 (clustered). This script answers the question with real embeddings: it
copies a published snapshot's chunk vectors into memory, embeds the collection's queries
with the store's embedder, and compares the exact top-k (`array_inner_product`, what
`search_vector` does) with HNSW top-k for several `ef_search` values: chunk recall@10,
document nDCG@10 against the collection's judgments, latency and index build time.

    .venv/bin/rag-store eval --collection scifact --keep /tmp/scifact-store
    .venv/bin/python bench/hnsw_real.py --snapshot /tmp/scifact-store/eval_snapshot.duckdb \\
        --collection scifact
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import duckdb

from rag_store.embedding import embed_texts
from rag_store.evaluation import documents_from_chunks, load_collection, ndcg_at
from rag_store.search import store_model_reference, vector_literal
from rag_store.snapshot import extension_path

DEPTH = 100  # chunks fetched per query, folded to documents as the evaluation does


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def run_queries(conn, sql: str, vectors) -> tuple[list[list[tuple[str, str]]], list[float]]:
    rows, times = [], []
    for vector in vectors:
        started = time.perf_counter()
        found = conn.execute(sql, {"q": vector_literal(vector)}).fetchall()
        times.append((time.perf_counter() - started) * 1000)
        rows.append(found)
    return rows, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--model", default=None, help="default: the snapshot's embedder")
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--ef-search", type=int_list, default=[64, 128, 256])
    args = parser.parse_args(argv)

    collection = load_collection(args.eval_dir, args.collection)
    with duckdb.connect(str(args.snapshot), read_only=True) as snapshot:
        model = args.model or store_model_reference(snapshot)
        (dimension,) = snapshot.execute("select dimension from store_info").fetchone()
    if not model:
        parser.error("the snapshot records no embedder; pass --model")
    query_ids = sorted(collection.queries)
    vectors = embed_texts([collection.queries[q] for q in query_ids], model)

    conn = duckdb.connect(":memory:")
    conn.execute(f"load '{extension_path('vss')}'")
    conn.execute(f"attach '{args.snapshot}' as store (read_only)")
    conn.execute(
        "create table items as select chunk_id, doc_id, embedding from store.retrieval_store"
    )
    conn.execute("detach store")
    (chunks,) = conn.execute("select count(*) from items").fetchone()

    vector = f"$q::float[{int(dimension)}]"
    exact_sql = (
        f"select chunk_id, doc_id from items order by array_inner_product(embedding, {vector}) "
        f"desc, chunk_id limit {DEPTH}"
    )
    exact, exact_times = run_queries(conn, exact_sql, vectors)

    def quality(results) -> float:
        scores = []
        for qid, rows in zip(query_ids, results, strict=True):
            ranked = documents_from_chunks([doc_id for _, doc_id in rows])
            scores.append(ndcg_at(ranked, collection.qrels[qid]))
        return sum(scores) / len(scores)

    options = f"metric = 'cosine', m = {args.m}, ef_construction = {args.ef_construction}"
    started = time.perf_counter()
    conn.execute(f"create index items_hnsw on items using hnsw (embedding) with ({options})")
    build_s = time.perf_counter() - started
    hnsw_sql = (
        f"select chunk_id, doc_id from items "
        f"order by array_cosine_distance(embedding, {vector}) limit {DEPTH}"
    )
    plan = conn.execute(f"explain {hnsw_sql}", {"q": vector_literal(vectors[0])}).fetchall()
    if "HNSW" not in plan[0][1].upper():
        raise SystemExit("the query plan does not use the HNSW index")

    print(
        f"\n{args.collection}: {chunks:,} chunks of {model}, {len(query_ids)} queries, "
        f"top-{DEPTH} chunks per query folded to documents; HNSW m {args.m}, "
        f"ef_construction {args.ef_construction}, built in {build_s:.1f} s; "
        f"duckdb {duckdb.__version__}\n"
    )
    print("| search | p50 ms | chunk recall@10 vs exact | document nDCG@10 |")
    print("|---|---:|---:|---:|")
    print(
        f"| exact (inner product) | {statistics.median(exact_times):.1f} | 1.000 | "
        f"{quality(exact):.4f} |"
    )
    for ef_search in args.ef_search:
        conn.execute(f"set hnsw_ef_search = {int(ef_search)}")
        found, times = run_queries(conn, hnsw_sql, vectors)
        recall = statistics.mean(
            len({c for c, _ in got[:10]} & {c for c, _ in truth[:10]}) / 10
            for got, truth in zip(found, exact, strict=True)
        )
        print(
            f"| HNSW ef_search {ef_search} | {statistics.median(times):.1f} | {recall:.3f} | "
            f"{quality(found):.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
