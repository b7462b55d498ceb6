"""Embedding throughput at the model's full window, outside dbt.

Builds texts of exactly `max_chunk_tokens` tokens (254 for all-MiniLM-L6-v2, i.e. 256 with
[CLS] and [SEP]) from the synthetic corpus and embeds them with rag_store.embedding, the
code path chunk_embeddings uses. Reports model load time and chunks/s, so the "chunks of
256 tokens per second" figure does not depend on how a corpus happens to chunk.

    .venv/bin/python bench/embed_throughput.py                 # 256 texts, batch size 32
    .venv/bin/python bench/embed_throughput.py --texts 512 --batch-sizes 16,32,64
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
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int_list, default=[32])
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args(argv)

    info = embedder_info(args.model)
    tokens = info.max_chunk_tokens
    tokenizer = load_tokenizer(str(info.tokenizer_file))
    texts = full_window_texts(args.texts, tokens, tokenizer, args.seed)

    from rag_store.embedding import embed_texts, load_model

    started = time.perf_counter()
    load_model(args.model)
    load_s = time.perf_counter() - started
    import torch

    embed_texts(texts[:8], args.model, batch_size=8)  # first forward pass, untimed
    print(
        f"\n{info.model_id}: {len(texts)} texts of {tokens} tokens "
        f"({tokens + info.special_tokens} with special tokens), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, model load {load_s:.1f}s\n"
    )
    print("| batch size | texts | seconds | chunks/s | tokens/s |")
    print("|---:|---:|---:|---:|---:|")
    for batch_size in args.batch_sizes:
        started = time.perf_counter()
        embed_texts(texts, args.model, batch_size=batch_size)
        elapsed = time.perf_counter() - started
        print(
            f"| {batch_size} | {len(texts)} | {elapsed:.1f} | {len(texts) / elapsed:.1f} | "
            f"{len(texts) * tokens / elapsed:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
