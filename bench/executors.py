"""Embedding executors side by side: the local one and Ray actors, on the same chunk texts.

Each row embeds the same texts in the same length-sorted batches through the code the
chunk_embeddings model runs (`embed_batch_or_errors` locally, `ray_executor.embed` on Ray)
and reports:
  start-up     local: model load; ray: a local Ray instance started and every actor's
               model loaded (measured as the time to the first finished batch, less one
               batch's embedding time)
  embedding    wall time from the first batch to the last, and chunks/s
  per worker   chunks/s divided by the workers (threads for the local executor)

then projects the embedding time of a million documents (about two million chunks of the
collection's size) per executor from the measured per-worker rate, assuming workers scale
linearly across nodes (they share nothing but the driver). A GPU row is printed only when
torch sees one. Rows run in turn on an otherwise idle machine; run it twice to see the noise.

    .venv/bin/python bench/executors.py --texts 400
    .venv/bin/python bench/executors.py --texts-from window --texts 256 --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embed_throughput import bench_texts
from run_benchmarks import cpu_model

from rag_store.embedder_info import DEFAULT_MODEL, embedder_info
from rag_store.embedding import length_sorted_batches, load_model
from rag_store.embedding_job import EmbeddingJobConfig, embed_batch_or_errors

CHUNKS_PER_MILLION_DOCUMENTS = 2_000_000


def run_local(texts, batches, model_ref: str, device: str) -> dict:
    loading = time.perf_counter()
    encoder = load_model(model_ref, len(texts), device)
    encoder.set_threads(os.cpu_count() or 1)
    startup = time.perf_counter() - loading
    info = embedder_info(model_ref)
    started = time.perf_counter()
    for batch in batches:
        embed_batch_or_errors([texts[i] for i in batch], info, model_ref, encoder)
    seconds = time.perf_counter() - started
    workers = 1 if device != "cpu" else (os.cpu_count() or 1)
    return {"startup": startup, "seconds": seconds, "workers": workers}


def run_ray(texts, batches, model_ref: str, workers: int) -> dict:
    from rag_store import ray_executor

    info = embedder_info(model_ref)
    config = EmbeddingJobConfig(model_ref, info.dimension, 0, "cpu", "ray", "", workers)
    arrivals: list[float] = []

    def save(batch, vectors, errors):
        assert not any(errors), errors
        arrivals.append(time.perf_counter())

    started = time.perf_counter()
    ray_executor.embed(texts, batches, info, config, save, lambda message: None)
    finished = time.perf_counter()
    # The first batch came back one batch's work after the workers were ready.
    per_batch = (arrivals[-1] - arrivals[0]) / max(len(arrivals) - 1, 1) * workers
    ready = arrivals[0] - per_batch
    return {"startup": ready - started, "seconds": finished - ready, "workers": workers}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--texts-from", default="scifact", help="window, or a collection name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    texts, tokens = bench_texts(args.model, args.texts_from, args.texts, args.seed)
    batches = length_sorted_batches(texts, args.batch_size)

    rows: dict[str, dict] = {}
    rows["local, CPU"] = run_local(texts, batches, args.model, "cpu")
    for workers in [int(part) for part in args.workers.split(",") if part.strip()]:
        rows[f"ray, {workers} worker(s) x 1 CPU"] = run_ray(texts, batches, args.model, workers)
    import torch

    if torch.cuda.is_available():
        rows["local, CUDA"] = run_local(texts, batches, args.model, "cuda")

    print(
        f"\n{len(texts)} texts ({args.texts_from}, {tokens} tokens, {tokens / len(texts):.0f} "
        f"per chunk), batch {args.batch_size}, {args.model}\nCPU: {cpu_model()}, "
        f"{os.cpu_count()} cores\n"
    )
    print("| executor | start-up s | embedding s | chunks/s | per worker | 1M documents |")
    print("|---|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        rate = len(texts) / row["seconds"]
        row.update(chunks_per_second=rate, per_worker=rate / row["workers"])
        hours = CHUNKS_PER_MILLION_DOCUMENTS / rate / 3600
        print(
            f"| {name} | {row['startup']:.1f} | {row['seconds']:.1f} | {rate:.1f} "
            f"| {row['per_worker']:.1f} | {hours:.1f} h |"
        )
    ray_rows = [row for name, row in rows.items() if name.startswith("ray")]
    if ray_rows:
        # The row using every core of this node: Ray's overhead against the local executor
        # on the same cores, and the per-worker rate the projection scales.
        full = max(ray_rows, key=lambda row: row["workers"])
        local = rows["local, CPU"]
        print(
            f"\nRay with {full['workers']} worker(s) against the local executor on the same "
            f"cores: {full['chunks_per_second']:.1f} vs {local['chunks_per_second']:.1f} "
            f"chunks/s ({full['chunks_per_second'] / local['chunks_per_second']:.2f}x); "
            f"start-up {full['startup']:.1f} s vs {local['startup']:.1f} s."
        )
        print(
            "\nProjected embedding time of 1M documents (2M chunks) by Ray workers at "
            f"{full['per_worker']:.1f} chunks/s each:"
        )
        for workers in (8, 32, 128):
            hours = CHUNKS_PER_MILLION_DOCUMENTS / (full["per_worker"] * workers) / 3600
            print(f"  {workers:4d} workers x 1 CPU: {hours:.2f} h")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
