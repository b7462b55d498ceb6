"""rag-store beside LangChain's indexing API on the same documents, model and machine.

The peer is what a LangChain user would build for the same job: LangChain's tokenizer-length
splitter (`RecursiveCharacterTextSplitter.from_huggingface_tokenizer`, the same 254-token
budget and 32-token overlap as rag-store's defaults), `HuggingFaceEmbeddings` with the same
bundled all-MiniLM-L6-v2, a FAISS store saved to disk and `index()` with a `SQLRecordManager`
on SQLite, `cleanup="incremental"`. It runs from its own virtualenv (`make peer-setup`
builds `.venv-peer` from bench/peer/requirements.txt); none of it is a project dependency.

Builds, interleaved (rag-store, then the peer, for each step), every one a fresh process:

  full      the first --docs documents of the collection
  edit      --edit-fraction of them (default 1%) with a sentence appended
  no-op     the same documents again

Then the splitters alone, on the same documents and on the synthetic corpus
(bench/corpus.py) at --split-docs sizes: rag-store's chunker (the code the `rag_chunk` UDF
runs) and LangChain's splitter, each with its tokenizer already loaded.

    .venv/bin/python bench/langchain_peer.py                  # 1,000 SciFact abstracts
    .venv/bin/python bench/langchain_peer.py --docs 200 --split-docs 1000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
from build_benchmark import run_dbt
from run_benchmarks import cpu_model

from rag_store.chunking import chunker_for
from rag_store.embedder_info import DEFAULT_MODEL
from rag_store.evaluation import Collection, load_collection, write_feed

REPO = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO.parent / "shared" / "eval"
PEER_RUN = Path(__file__).resolve().parent / "peer" / "langchain_run.py"
EDIT_SENTENCE = " A later revision of this abstract adds one sentence to its end."
BUILD_VARS = {"max_rejected_rows": 1_000_000, "max_delete_fraction": 1}


def log(message: str) -> None:
    print(f"[langchain-peer] {message}", file=sys.stderr, flush=True)


def edited(collection: Collection, fraction: float, seed: int) -> Collection:
    count = max(1, round(len(collection.documents) * fraction))
    chosen = set(random.Random(seed).sample(range(len(collection.documents)), count))
    documents = [
        {**doc, "text": (doc.get("text") or "") + EDIT_SENTENCE} if i in chosen else doc
        for i, doc in enumerate(collection.documents)
    ]
    return replace(collection, documents=documents)


def write_peer_docs(rows, path: Path) -> Path:
    """(doc_id, title, body) rows as the JSON lines the peer reads."""
    with path.open("w", encoding="utf-8") as handle:
        for doc_id, title, body in rows:
            handle.write(json.dumps({"doc_id": doc_id, "title": title, "body": body}) + "\n")
    return path


def collection_rows(collection: Collection):
    return [
        (str(d["doc_id"]), d.get("title") or "", d.get("text") or "") for d in collection.documents
    ]


def run_peer(python: Path, phase: str, docs: Path, workdir: Path) -> dict:
    started = time.perf_counter()
    completed = subprocess.run(
        [str(python), str(PEER_RUN), phase, "--docs", str(docs), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"peer {phase} failed:\n{completed.stderr[-3000:]}")
    return {"wall_s": wall, **json.loads(completed.stdout.strip().splitlines()[-1])}


def store_counts(db_path: Path) -> tuple[int, int]:
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as conn:
        chunks, tokens = conn.execute(
            "select count(*), sum(token_count) from retrieval_store"
        ).fetchone()
    return int(chunks), int(tokens)


def builds(args, workdir: Path) -> list[dict]:
    collection = load_collection(EVAL_DIR, args.collection)
    collection = replace(collection, documents=collection.documents[: args.docs])
    changed = edited(collection, args.edit_fraction, args.seed)
    feed_dir = workdir / "feed"
    feed_dir.mkdir()
    write_feed(collection, feed_dir / "0001_initial.jsonl")
    edits = [
        d
        for d, before in zip(changed.documents, collection.documents, strict=True)
        if d is not before
    ]
    peer_full = write_peer_docs(collection_rows(collection), workdir / "peer-full.jsonl")
    peer_edit = write_peer_docs(collection_rows(changed), workdir / "peer-edit.jsonl")
    dbt_args = SimpleNamespace(
        model=args.model, extra_vars=json.dumps(BUILD_VARS), no_time_binary=False
    )
    feed_glob = str(feed_dir / "*.jsonl")
    rows = []
    for step, peer_docs in (("full", peer_full), ("edit", peer_edit), ("no-op", peer_edit)):
        if step == "edit":
            write_feed(
                replace(collection, documents=edits),
                feed_dir / "0002_edits.jsonl",
                updated_at="2026-02-01T00:00:00Z",
            )
        log(f"rag-store {step} build ({len(collection.documents)} documents) ...")
        build = run_dbt(step, dbt_args, workdir, feed_glob, args.timeout)
        chunks, tokens = store_counts(workdir / "store.duckdb")
        rows.append(
            {
                "system": "rag-store",
                "step": step,
                "wall_s": build.wall_s,
                "embedded": build.embedded or 0,
                "model_load_s": build.model_load_s,
                "chunks": chunks,
                "tokens": tokens,
                "chunking_s": build.node_seconds.get("int_document_chunks"),
            }
        )
        log(f"rag-store {step}: {build.wall_s:.1f} s")
        log(f"LangChain {step} run ...")
        peer = run_peer(args.peer_python, "index", peer_docs, workdir / "peer")
        rows.append(
            {
                "system": "LangChain index()",
                "step": step,
                "wall_s": peer["wall_s"],
                "embedded": peer["num_added"] + peer["num_updated"],
                "model_load_s": peer["model_load_s"],
                "chunks": peer["vectors"],
                "tokens": peer["tokens"],
                "chunking_s": peer["split_s"],
                "deleted": peer["num_deleted"],
            }
        )
        log(f"LangChain {step}: {peer['wall_s']:.1f} s")
    return rows


def time_chunker(rows) -> dict:
    """rag-store's chunker one document at a time, chunks counted and dropped (as the
    `rag_chunk` UDF hands each batch to DuckDB), timed as the peer's splitter is."""
    chunker = chunker_for(DEFAULT_MODEL, 0, 32, True)
    seconds, chunks, tokens = 0.0, 0, 0
    for _, title, body in rows:
        started = time.perf_counter()
        pieces = chunker.chunk(body, title)
        seconds += time.perf_counter() - started
        chunks += len(pieces)
        tokens += sum(piece.token_count for piece in pieces)
    return {"documents": len(rows), "chunks": chunks, "tokens": tokens, "split_s": seconds}


def splitters(args, workdir: Path) -> list[dict]:
    sets = [(f"{args.collection} (first {args.docs})", None)]
    sets += [(f"synthetic {n:,}", n) for n in args.split_docs]
    results = []
    for label, size in sets:
        if size is None:
            collection = load_collection(EVAL_DIR, args.collection)
            rows = collection_rows(replace(collection, documents=collection.documents[: args.docs]))
        else:
            rows = [(d.doc_id, d.title, d.body) for d in corpus.make_corpus(size, args.seed)]
        docs = write_peer_docs(rows, workdir / "split.jsonl")
        log(f"splitters on {label} ...")
        ours = time_chunker(rows)
        peer = run_peer(args.peer_python, "split", docs, workdir / "peer-split")
        for system, figures in (("rag-store chunker", ours), ("LangChain splitter", peer)):
            results.append({"documents_label": label, "system": system, **figures})
    return results


def print_tables(args, rows: list[dict], split_rows: list[dict]) -> None:
    print(f"\nCPU: {cpu_model()}; {args.docs} {args.collection} documents, model {args.model}\n")
    if rows:
        print_builds(rows)
    print("\n| documents | splitter | docs/s | chunks | tokens | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for row in split_rows:
        print(
            f"| {row['documents_label']} | {row['system']} "
            f"| {row['documents'] / row['split_s']:,.0f} | {row['chunks']:,} "
            f"| {row['tokens']:,} | {row['split_s']:.1f} |"
        )


def print_builds(rows: list[dict]) -> None:
    print(
        "| step | system | wall s | chunks embedded | model load s | chunking s | chunks | tokens |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        load = "—" if row["model_load_s"] is None else f"{row['model_load_s']:.1f}"
        chunking = "—" if row["chunking_s"] is None else f"{row['chunking_s']:.1f}"
        print(
            f"| {row['step']} | {row['system']} | {row['wall_s']:.1f} | {row['embedded']:,} "
            f"| {load} | {chunking} | {row['chunks']:,} | {row['tokens']:,} |"
        )
    for step in ("full", "edit", "no-op"):
        ours, peer = (r for r in rows if r["step"] == step)
        print(
            f"- {step}: rag-store takes {ours['wall_s'] / peer['wall_s']:.2f} times the peer's time"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", default="scifact")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--edit-fraction", type=float, default=0.01)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--peer-python", type=Path, default=REPO / ".venv-peer" / "bin" / "python")
    parser.add_argument(
        "--split-docs",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[1000, 10000],
        help="synthetic corpus sizes for the splitter comparison ('' for none)",
    )
    parser.add_argument("--skip-builds", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.peer_python.exists():
        raise SystemExit(
            f"no peer virtualenv at {args.peer_python}: run `make peer-setup` first "
            "(or pass --peer-python)"
        )
    with tempfile.TemporaryDirectory(prefix="rag-store-langchain-peer-") as scratch:
        workdir = Path(scratch)
        rows = [] if args.skip_builds else builds(args, workdir)
        split_rows = splitters(args, workdir)
    print_tables(args, rows, split_rows)
    if args.json:
        args.json.write_text(json.dumps({"builds": rows, "splitters": split_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
