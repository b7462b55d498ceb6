"""Embedding throughput at the model's full window, outside dbt.

Builds texts of exactly `window_tokens` tokens (254 for all-MiniLM-L6-v2, i.e. 256 with
[CLS] and [SEP]) from the synthetic corpus and embeds them with rag_store.embedding, the
code path chunk_embeddings uses. Reports model load time and chunks/s, so the "chunks of
256 tokens per second" figure does not depend on how a corpus happens to chunk. Each
embedder is compared with the first one listed: the smallest cosine between the two vectors
of the same text.

    .venv/bin/python bench/embed_throughput.py       # fp32 and bf16, 256 texts, batch 32
    .venv/bin/python bench/embed_throughput.py --texts 512 --batch-sizes 16,32,64
    .venv/bin/python bench/embed_throughput.py --models all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make_corpus

from rag_store.chunking import load_tokenizer
from rag_store.embedder_info import DEFAULT_MODEL, embedder_info


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


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=[DEFAULT_MODEL, f"bf16:{DEFAULT_MODEL}"],
        help="comma-separated embedder references; the first is the reference for cosines",
    )
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int_list, default=[32])
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args(argv)

    info = embedder_info(args.models[0])
    tokens = info.window_tokens
    tokenizer = load_tokenizer(str(info.tokenizer_file))
    texts = full_window_texts(args.texts, tokens, tokenizer, args.seed)

    import torch

    from rag_store.embedding import embed_texts, load_model, native_bf16

    print(
        f"\n{len(texts)} texts of {tokens} tokens ({tokens + info.special_tokens} with special "
        f"tokens), torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"native bf16: {native_bf16()}\n"
    )
    print("| embedder | load s | batch size | texts | seconds | chunks/s | tokens/s | min cosine |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    reference = None
    for model in args.models:
        started = time.perf_counter()
        load_model(model)
        load_s = time.perf_counter() - started
        embed_texts(texts[:8], model, batch_size=8)  # first forward pass, untimed
        for batch_size in args.batch_sizes:
            started = time.perf_counter()
            vectors = embed_texts(texts, model, batch_size=batch_size)
            elapsed = time.perf_counter() - started
            if reference is None:
                reference = vectors
            cosine = float((vectors * reference).sum(axis=1).min())
            print(
                f"| {embedder_info(model).model_id} | {load_s:.1f} | {batch_size} | {len(texts)} | "
                f"{elapsed:.1f} | {len(texts) / elapsed:.1f} | "
                f"{len(texts) * tokens / elapsed:.0f} | {cosine:.5f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
