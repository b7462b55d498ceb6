"""Retrieval quality on a labeled collection (documents, queries, graded qrels).

`rag-store eval --collection scifact` turns the collection's corpus into a change feed,
builds a store from it with the real pipeline (dbt, chunking, the embedder), runs every
query in every search mode against the published snapshot, folds chunk hits back to
documents (a document scores as its best chunk) and reports nDCG@10 and recall@10 next to
the collection's published reference scores. The collection is read at run time from
its directory and never copied into the project.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Published figures for the collections in the shared evaluation folder (nDCG@10 unless
# noted), as recorded in each collection's SOURCE.md.
REFERENCES: dict[str, list[tuple[str, float, str]]] = {
    "scifact": [
        ("all-MiniLM-L6-v2, whole documents, cosine (MTEB results)", 0.64508, "R@10 0.78333"),
        ("BM25, Anserini flat (title+text)", 0.6789, ""),
        ("BM25, Anserini multifield", 0.6647, ""),
    ],
    "cranfield": [
        ("no published reference; plain BM25 sanity figure from SOURCE.md", 0.3382, ""),
    ],
}
MODES = ("vector", "keyword", "hybrid")


@dataclass(frozen=True)
class Collection:
    name: str
    documents: list[dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_collection(eval_dir: Path, name: str) -> Collection:
    root = eval_dir / name
    if not (root / "corpus.jsonl").exists():
        available = sorted(p.name for p in eval_dir.iterdir() if (p / "corpus.jsonl").exists())
        raise FileNotFoundError(f"no collection {name!r} in {eval_dir}; have {available}")
    with (root / "corpus.jsonl").open(encoding="utf-8") as handle:
        documents = [json.loads(line) for line in handle if line.strip()]
    with (root / "queries.jsonl").open(encoding="utf-8") as handle:
        queries = {q["query_id"]: q["text"] for q in map(json.loads, handle) if q}
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if int(row["relevance"]) > 0:
                qrels.setdefault(row["query_id"], {})[row["doc_id"]] = int(row["relevance"])
    queries = {qid: text for qid, text in queries.items() if qid in qrels}
    return Collection(name, documents, queries, qrels)


def write_feed(collection: Collection, path: Path, updated_at: str = "2026-01-01T00:00:00Z") -> int:
    """The corpus as a rag-store change feed, every row updated and delivered at
    `updated_at`; returns the number of rows written."""
    with path.open("w", encoding="utf-8") as handle:
        for document in collection.documents:
            row = {
                "doc_id": str(document["doc_id"]),
                "title": document.get("title") or "",
                "body": document.get("text") or "",
                "source_uri": f"eval://{collection.name}/{document['doc_id']}",
                "updated_at": updated_at,
                "is_deleted": False,
                "_loaded_at": updated_at,
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(collection.documents)


def ndcg_at(ranked: list[str], gains: dict[str, int], k: int = 10) -> float:
    dcg = sum(gains.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(i + 2) for i, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], gains: dict[str, int], k: int = 10) -> float:
    relevant = {doc for doc, gain in gains.items() if gain > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def documents_from_chunks(chunk_doc_ids: list[str], k: int = 10) -> list[str]:
    """Best-chunk fusion: documents in the order their first (best) chunk appears."""
    ranked: list[str] = []
    for doc_id in chunk_doc_ids:
        if doc_id not in ranked:
            ranked.append(doc_id)
            if len(ranked) == k:
                break
    return ranked


def build_store(
    feed: Path, workdir: Path, project_dir: Path, model_ref: str, extra_vars: dict | None = None
) -> Path:
    database = workdir / "eval.duckdb"
    env = dict(os.environ, RAG_STORE_DB=str(database), DBT_PROFILES_DIR=str(project_dir))
    dbt = Path(sys.executable).parent / "dbt"
    dbt_vars = {
        "document_feed": str(feed),
        "embedding_model": model_ref,
        "max_rejected_rows": 1_000_000,
        "max_delete_fraction": 1,
        **(extra_vars or {}),
    }
    command = [
        str(dbt),
        "build",
        "--project-dir",
        str(project_dir),
        "--target-path",
        str(workdir / "target"),
        "--log-path",
        str(workdir / "logs"),
        "--vars",
        json.dumps(dbt_vars),
    ]
    completed = subprocess.run(command, cwd=project_dir, env=env, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"dbt build of the evaluation store failed ({completed.returncode})")
    from rag_store.snapshot import default_snapshot_path

    return default_snapshot_path(database)


def evaluate(
    snapshot: Path, collection: Collection, model_ref: str, depth: int = 100
) -> dict[str, dict[str, float]]:
    import duckdb

    from rag_store.embedder_info import embedder_info
    from rag_store.embedding import embed_texts
    from rag_store.search import call_search_macro

    query_ids = sorted(collection.queries)
    texts = [collection.queries[qid] for qid in query_ids]
    vectors = embed_texts(texts, model_ref)
    model_id = embedder_info(model_ref).model_id
    results: dict[str, dict[str, float]] = {}
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        for mode in ("vector", "keyword", "hybrid"):
            ndcgs, recalls = [], []
            started = time.perf_counter()
            for qid, text, vector in zip(query_ids, texts, vectors, strict=True):
                hits = call_search_macro(
                    conn,
                    mode,
                    depth,
                    query_text=text,
                    query_vector=vector,
                    model_id=model_id,
                    schema="main",
                )
                ranked = documents_from_chunks([hit.doc_id for hit in hits])
                ndcgs.append(ndcg_at(ranked, collection.qrels[qid]))
                recalls.append(recall_at(ranked, collection.qrels[qid]))
            elapsed = time.perf_counter() - started
            results[mode] = {
                "ndcg@10": sum(ndcgs) / len(ndcgs),
                "recall@10": sum(recalls) / len(recalls),
                "ms_per_query": 1000 * elapsed / len(query_ids),
            }
    return results


def report(name: str, results: dict[str, dict[str, float]], queries: int, docs: int) -> str:
    lines = [
        f"collection {name}: {docs} documents, {queries} queries with judgments",
        "",
        "| mode | nDCG@10 | recall@10 | ms/query |",
        "|---|---|---|---|",
    ]
    for mode, scores in results.items():
        lines.append(
            f"| {mode} | {scores['ndcg@10']:.4f} | {scores['recall@10']:.4f} "
            f"| {scores['ms_per_query']:.1f} |"
        )
    references = REFERENCES.get(name, [])
    if references:
        lines += ["", "| published reference | nDCG@10 | other |", "|---|---|---|"]
        lines += [f"| {label} | {value:.4f} | {other} |" for label, value, other in references]
    return "\n".join(lines)


def run(
    name: str,
    eval_dir: Path,
    project_dir: Path,
    model_ref: str,
    keep: Path | None = None,
    extra_vars: dict | None = None,
) -> str:
    collection = load_collection(eval_dir, name)
    with tempfile.TemporaryDirectory(prefix=f"rag-store-eval-{name}-") as scratch:
        workdir = keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        feed = workdir / f"{name}.jsonl"
        write_feed(collection, feed)
        print(f"[rag-store] eval: building a store from {feed}", file=sys.stderr, flush=True)
        snapshot = build_store(feed, workdir, project_dir, model_ref, extra_vars)
        results = evaluate(snapshot, collection, model_ref)
    return report(name, results, len(collection.queries), len(collection.documents))
