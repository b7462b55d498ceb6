"""Embedding throughput of every rag-store embedding path beside plain sentence-transformers.

All embedders get the same chunk texts: either texts of exactly the model's window
(`--texts-from window`, 254 tokens for all-MiniLM-L6-v2: a figure that does not depend on
how a corpus happens to chunk) or the chunks rag-store's chunker makes of the first
documents of an evaluation collection (`--texts-from scifact`, read from
../shared/eval/<name>/corpus.jsonl with the default chunk settings).

Rows, measured in interleaved rounds so a busy neighbour slows them alike (the best round
is reported):
  plain encode      SentenceTransformer.encode(texts, batch_size=B), torch fp32: the baseline
  rag-store paths   rag_store.embedding.embed_texts (length-sorted batches, the code path
                    chunk_embeddings uses) for each reference and runtime in --embedders

Also reports per path the load time in a fresh process (imports and model, the first
forward pass excluded; "cold" is the first load after the page cache was warm, with any
one-off ONNX export already done) and the smallest and mean cosine to the plain-encode
vector of the same text. No figure is checked against a threshold.

    .venv/bin/python bench/embed_throughput.py
    .venv/bin/python bench/embed_throughput.py --texts-from scifact --texts 400 --rounds 3
    .venv/bin/python bench/embed_throughput.py \
        --embedders torch:all-MiniLM-L6-v2,onnxruntime:int8:all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make_corpus
from run_benchmarks import cpu_model

from rag_store.chunking import chunker_for, load_tokenizer
from rag_store.embedder_info import DEFAULT_MODEL, embedder_info

REPO = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO.parent / "shared" / "eval"
# RUNTIME:REFERENCE; the runtime picks the engine of an fp32 reference (bf16: and int8:
# references have one engine each, so their runtime part is ignored).
DEFAULT_EMBEDDERS = (
    f"torch:{DEFAULT_MODEL}",
    f"onnxruntime:{DEFAULT_MODEL}",
    f"onnxruntime:int8:{DEFAULT_MODEL}",
    f"torch:bf16:{DEFAULT_MODEL}",
)


def full_window_texts(count: int, tokens: int, tokenizer, seed: int) -> list[str]:
    """`count` distinct texts, each exactly `tokens` tokens long (no special tokens)."""
    texts: list[str] = []
    docs = iter(make_corpus(count * 4, seed))
    pending = ""
    while len(texts) < count:
        pending += next(docs).body + "\n\n"
        encoding = tokenizer.encode(pending, add_special_tokens=False)
        while len(encoding.ids) >= tokens and len(texts) < count:
            cut = encoding.offsets[tokens - 1][1]
            candidate = pending[:cut]
            if len(tokenizer.encode(candidate, add_special_tokens=False).ids) == tokens:
                texts.append(candidate)
            pending = pending[cut:].lstrip()
            encoding = tokenizer.encode(pending, add_special_tokens=False)
    return texts


def collection_chunk_texts(name: str, count: int) -> list[str]:
    """The embedding texts of the first `count` chunks of collection `name`, chunked as the
    pipeline does by default (254 tokens, overlap 32, title › heading header)."""
    chunker = chunker_for(DEFAULT_MODEL, 254, 32, True)
    texts: list[str] = []
    with (EVAL_DIR / name / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts += [c.embedding_text for c in chunker.chunk(row["text"], row.get("title", ""))]
            if len(texts) >= count:
                break
    return texts[:count]


def bench_texts(model_ref: str, source: str, count: int, seed: int) -> tuple[list[str], int]:
    """`count` texts from `source` ("window": full-window texts, else a collection's chunks)
    and their total token count (no special tokens)."""
    info = embedder_info(model_ref)
    tokenizer = load_tokenizer(str(info.tokenizer_file))
    if source == "window":
        texts = full_window_texts(count, info.window_tokens, tokenizer, seed)
    else:
        texts = collection_chunk_texts(source, count)
    return texts, sum(len(tokenizer.encode(text, add_special_tokens=False).ids) for text in texts)


def load_seconds(runtime: str, reference: str) -> float:
    """Seconds a fresh process takes to import and load `reference` on `runtime`."""
    code = (
        "import time; t = time.perf_counter()\n"
        "from rag_store.embedding import load_model\n"
        f"load_model({reference!r})\n"
        "print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "RAG_STORE_EMBEDDING_RUNTIME": runtime}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = set(text.split("flags", 1)[1].split("\n", 1)[0].split()) if "flags" in text else set()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
    return " ".join(flag for flag in wanted if flag in flags)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--texts-from", default="window", help="window, or a collection name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--embedders",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=list(DEFAULT_EMBEDDERS),
        help="comma-separated RUNTIME:REFERENCE (runtime torch or onnxruntime)",
    )
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    info = embedder_info(DEFAULT_MODEL)
    texts, tokens = bench_texts(DEFAULT_MODEL, args.texts_from, args.texts, args.seed)

    import torch
    from sentence_transformers import SentenceTransformer

    from rag_store import embedding

    threads = torch.get_num_threads()
    plain = SentenceTransformer(str(info.path), device="cpu", local_files_only=True)

    def plain_encode(batch: list[str]) -> np.ndarray:
        return plain.encode(batch, batch_size=args.batch_size, normalize_embeddings=True)

    def rag_store_path(runtime: str, reference: str):
        os.environ[embedding.RUNTIME_ENV] = runtime
        encoder = embedding.load_model(reference)
        os.environ.pop(embedding.RUNTIME_ENV)

        def run(batch: list[str]) -> np.ndarray:
            result = np.zeros((len(batch), info.dimension), dtype=np.float32)
            for rows in embedding.length_sorted_batches(batch, args.batch_size):
                result[rows] = embedding.l2_normalise(encoder.encode([batch[i] for i in rows]))
            return result

        return f"{encoder.runtime} {embedder_info(reference).precision}", run

    paths = {"plain SentenceTransformer.encode, torch fp32": ("torch", None, plain_encode)}
    for item in args.embedders:
        runtime, _, reference = item.partition(":")
        label, run = rag_store_path(runtime, reference)
        paths[f"rag-store {label} ({reference})"] = (runtime, reference, run)

    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for label, (_, _, run) in paths.items():
            run(texts[:8])  # first forward pass of the round, untimed
            started = time.perf_counter()
            vectors[label] = run(texts)
            best[label] = min(best.get(label, float("inf")), time.perf_counter() - started)

    baseline_label = next(iter(paths))
    reference_vectors = vectors[baseline_label]
    rows = []
    for label, (runtime, reference, _) in paths.items():
        cosines = (vectors[label] * reference_vectors).sum(axis=1)
        rows.append(
            {
                "path": label,
                "seconds": best[label],
                "chunks_per_s": len(texts) / best[label],
                "tokens_per_s": tokens / best[label],
                "speedup": best[baseline_label] / best[label],
                "min_cosine": float(cosines.min()),
                "mean_cosine": float(cosines.mean()),
                "load_s": load_seconds(runtime, reference or DEFAULT_MODEL),
            }
        )

    load = os.getloadavg()[0]
    print(
        f"\n{len(texts)} texts ({args.texts_from}, {tokens} tokens), batch {args.batch_size}, "
        f"best of {args.rounds} rounds, {threads} threads; {cpu_model()} [{cpu_flags()}], "
        f"load average {load:.1f}; torch {torch.__version__}\n"
    )
    print(
        "| path | chunks/s | tokens/s | speed-up over plain encode | load s (fresh process) "
        "| min cos | mean cos |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['path']} | {row['chunks_per_s']:.1f} | {row['tokens_per_s']:.0f} | "
            f"{row['speedup']:.2f} | {row['load_s']:.1f} | {row['min_cosine']:.5f} | "
            f"{row['mean_cosine']:.5f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"cpu": cpu_model(), "flags": cpu_flags(), "load_average": load, "texts": len(texts)}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
