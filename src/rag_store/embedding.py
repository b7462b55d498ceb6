"""Load a sentence-transformers model offline and turn texts into L2-normalised vectors.

torch is imported only when something actually has to be embedded, so a build with nothing
new to embed stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from rag_store.embedder_info import EmbedderInfo, embedder_info, offline_environment

DEFAULT_BATCH_SIZE = 32


def load_model(model_ref: str):
    """The SentenceTransformer for `model_ref`, loaded once per process, never from the net.

    References that differ only in precision share one loaded model."""
    info = embedder_info(model_ref)
    return _load_model(str(info.path), info.dimension, info.max_seq_length)


@lru_cache(maxsize=4)
def _load_model(path: str, dimension: int, max_seq_length: int):
    offline_environment()
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    get_dimension = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    loaded_dimension = get_dimension()
    if loaded_dimension != dimension:
        raise RuntimeError(
            f"{path}: config says dimension {dimension} but the loaded model "
            f"produces {loaded_dimension}"
        )
    model.max_seq_length = max_seq_length
    return model


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AMX or AVX512-BF16)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@lru_cache(maxsize=1)
def _warn_slow_bf16() -> None:
    if not native_bf16():
        print(
            "rag-store: this CPU has no native bfloat16 (AMX or AVX512-BF16); a bf16: "
            "embedder will be slower here than the default fp32",
            file=sys.stderr,
        )


def _precision_context(info: EmbedderInfo):
    """The autocast context that runs the forward pass at `info.precision`."""
    import torch

    if info.precision == "bf16":
        _warn_slow_bf16()
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


# Test-only: a text containing this marker makes the hash backend raise, so tests can
# exercise embedding failures without a broken model.
HASH_FAILURE_MARKER = "<<rag-store-test-embedding-failure>>"


def hash_vectors(texts: Sequence[str], info: EmbedderInfo) -> np.ndarray:
    """Deterministic unit vectors derived from sha256(model name, text). Tests only."""
    vectors = np.zeros((len(texts), info.dimension), dtype=np.float32)
    for row, text in enumerate(texts):
        if HASH_FAILURE_MARKER in text:
            raise RuntimeError("hash embedder: injected failure")
        seed = hashlib.sha256(f"{info.name}\x1f{text}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
        vectors[row] = rng.standard_normal(info.dimension)
    return l2_normalise(vectors)


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Positions of `texts`, longest first, cut into batches of at most `batch_size`.

    Texts of similar length share a batch, which keeps padding (wasted compute) low. The one
    place texts are ordered for embedding: `embed_texts` and the chunk_embeddings job use it,
    and `embed_batch` embeds a batch in the order given.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def embed_batch(texts: Sequence[str], model_ref: str) -> np.ndarray:
    """One forward pass over `texts` as given: float32 [len(texts), d], unit length."""
    info: EmbedderInfo = embedder_info(model_ref)
    if not texts:
        return np.zeros((0, info.dimension), dtype=np.float32)
    if info.backend == "hash":
        return hash_vectors(texts, info)
    model = load_model(model_ref)
    with _precision_context(info):
        vectors = model.encode(
            list(texts),
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
    return l2_normalise(vectors)


def embed_texts(
    texts: Sequence[str], model_ref: str, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Embed `texts` in length-sorted batches; float32 [len(texts), d], unit length, in the
    order of `texts`."""
    info: EmbedderInfo = embedder_info(model_ref)
    result = np.zeros((len(texts), info.dimension), dtype=np.float32)
    for batch in length_sorted_batches(texts, batch_size):
        result[batch] = embed_batch([texts[i] for i in batch], model_ref)
    return result


def embed_query(text: str, model_ref: str) -> np.ndarray:
    """One query vector (d,), unit length."""
    return embed_batch([text], model_ref)[0]


def progress_bar(total: int, description: str):
    """A tqdm bar on stderr that also prints sensibly when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit="chunk",
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 10.0,
        dynamic_ncols=True,
    )
