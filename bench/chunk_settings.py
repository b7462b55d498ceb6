"""What the chunk overlap and the `title › heading` header cost and buy, per collection.

For each collection in ../shared/eval and each setting (chunk_overlap_tokens, and
chunk_context_header on or off) it builds a store with the real pipeline and the real model
(`rag-store eval`'s build), then reports what the setting costs (chunks and tokens
embedded, build seconds) and what it buys (nDCG@10 and recall@10 per search mode, scored as
`rag-store eval` scores them). Settings run one after another on the same machine.

    .venv/bin/python bench/chunk_settings.py --collections cranfield,scifact
    .venv/bin/python bench/chunk_settings.py --collections cranfield --overlaps 0,32,64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
from run_benchmarks import cpu_model

from rag_store.embedder_info import DEFAULT_MODEL
from rag_store.evaluation import MODES, build_store, evaluate, load_collection, write_feed

REPO = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO.parent / "shared" / "eval"


def measure(name: str, settings: dict, model: str) -> dict:
    collection = load_collection(EVAL_DIR, name)
    with tempfile.TemporaryDirectory(prefix=f"rag-store-chunk-settings-{name}-") as scratch:
        workdir = Path(scratch)
        feed = workdir / f"{name}.jsonl"
        write_feed(collection, feed)
        started = time.perf_counter()
        snapshot = build_store(feed, workdir, REPO, model, settings)
        seconds = time.perf_counter() - started
        with duckdb.connect(str(snapshot), read_only=True) as conn:
            chunks, tokens = conn.execute(
                "select count(*), sum(token_count) from retrieval_store"
            ).fetchone()
        scores = evaluate(snapshot, collection, model)
    return {"chunks": chunks, "tokens": int(tokens), "build_s": seconds, "scores": scores}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collections", default="cranfield,scifact")
    parser.add_argument("--overlaps", default="0,32", help="chunk_overlap_tokens values")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    overlaps = [int(part) for part in args.overlaps.split(",")]
    settings = [
        {"chunk_overlap_tokens": overlap, "chunk_context_header": header}
        for header in (True, False)
        for overlap in overlaps
    ]
    results = []
    for name in [part.strip() for part in args.collections.split(",") if part.strip()]:
        for setting in settings:
            print(f"[chunk-settings] {name} {setting}", file=sys.stderr, flush=True)
            results.append({"collection": name, **setting, **measure(name, setting, args.model)})

    print(f"\n{args.model}, CPU: {cpu_model()}\n")
    header = " | ".join(f"{mode} nDCG@10" for mode in MODES)
    print(f"| collection | overlap | header | chunks | tokens | build s | {header} |")
    print("|---|---:|---|---:|---:|---:|" + "---:|" * len(MODES))
    for row in results:
        scores = " | ".join(f"{row['scores'][mode]['ndcg@10']:.4f}" for mode in MODES)
        print(
            f"| {row['collection']} | {row['chunk_overlap_tokens']} "
            f"| {'on' if row['chunk_context_header'] else 'off'} | {row['chunks']:,} "
            f"| {row['tokens']:,} | {row['build_s']:.0f} | {scores} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
