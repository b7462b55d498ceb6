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
from dataclasses import replace
from functools import lru_cache

import numpy as np

from rag_store.embedder_info import EmbedderInfo, embedder_info, offline_environment

DEFAULT_BATCH_SIZE = 32

# Where torch runs an embedder: var embedding_device. "auto" takes a CUDA or MPS device when
# torch sees one and the CPU otherwise. The device does not enter the model_id: the same
# weights at the same precision give the same vectors on any device (bench/gpu_check.sh
# checks the cosine on a GPU machine); a reduced precision is its own model_id, as bf16: is.
DEVICES = ("auto", "cpu", "cuda", "mps")
ACCELERATORS = ("cuda", "mps")
# Texts per forward pass when embedding_batch_size is 0 (the default): an accelerator is
# only kept busy by bigger batches than the CPU, where 32 measured best (docs/benchmarks.md).
ACCELERATOR_BATCH_SIZE = 256


def requested_device(value: object = None) -> str:
    """The var embedding_device, checked: one of DEVICES ('' and None mean auto)."""
    device = str(value or "auto").strip().lower()
    if device not in DEVICES:
        raise ValueError(f"embedding_device={value!r}: expected one of {', '.join(DEVICES)}")
    return device


def batch_size_for(device: str, batch_size: int = 0) -> int:
    """`batch_size` when set (>= 1), else the default for `device`."""
    if batch_size:
        return batch_size
    return ACCELERATOR_BATCH_SIZE if device in ACCELERATORS else DEFAULT_BATCH_SIZE


def resolve_device(requested: str = "auto") -> str:
    """The torch device for `requested`: an explicit accelerator must be there."""
    requested = requested_device(requested)
    if requested == "cpu":
        return "cpu"
    offline_environment()
    import torch

    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if requested == "auto":
        return next((name for name in ACCELERATORS if available[name]), "cpu")
    if not available[requested]:
        raise RuntimeError(
            f"embedding_device={requested} but torch {torch.__version__} sees no "
            f"{requested.upper()} device: install a torch build with {requested.upper()} "
            "support, or set embedding_device: auto (uses the CPU when no accelerator is there)"
        )
    return requested


# Which engine runs an fp32 embedder: env RAG_STORE_EMBEDDING_RUNTIME, "torch",
# "onnxruntime" or "auto" (the default). Both fp32 engines give the same vectors (the ONNX
# export is checked against torch before it is used, see onnx_models), so they share a
# model_id; a bf16: embedder always runs on torch, an int8: one on ONNX Runtime.
# "auto" chooses by the work at hand and the CPU, as measured (docs/benchmarks.md): ONNX
# Runtime loads in under a second without importing torch (torch takes 6-13 s), so it embeds
# questions and small batches everywhere. From AUTO_TORCH_FROM_TEXTS texts on, the faster
# engine of the CPU's vendor does the work: on Intel Xeons torch's fp32 kernels were 1.46x
# ONNX Runtime's, on AMD EPYCs ONNX Runtime's were 1.5-1.8x torch's. CPUs not measured keep
# torch.
RUNTIME_ENV = "RAG_STORE_EMBEDDING_RUNTIME"
RUNTIMES = ("auto", "torch", "onnxruntime")
AUTO_TORCH_FROM_TEXTS = 256
ONNX_RUNTIME_VENDORS = frozenset({"AuthenticAMD"})


@lru_cache(maxsize=1)
def cpu_vendor() -> str:
    """The CPU's vendor string (e.g. GenuineIntel, AuthenticAMD), '' where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def requested_runtime() -> str:
    value = (os.environ.get(RUNTIME_ENV) or "auto").strip().lower()
    if value not in RUNTIMES:
        raise ValueError(f"{RUNTIME_ENV}={value!r}: expected one of {', '.join(RUNTIMES)}")
    return value


def runtime_for(info: EmbedderInfo, texts: int = 1, device: str = "auto") -> str:
    """The engine that embeds `texts` texts with `info` on `device` in this process."""
    device = requested_device(device)
    if info.precision == "int8":
        if device in ACCELERATORS:
            raise ValueError(
                f"{info.model_id} runs on ONNX Runtime on the CPU; set embedding_device: cpu "
                "or auto for it"
            )
        return "onnxruntime"
    if info.precision != "fp32" or device in ACCELERATORS:
        return "torch"
    requested = requested_runtime()
    if requested != "auto":
        return requested
    if texts < AUTO_TORCH_FROM_TEXTS or cpu_vendor() in ONNX_RUNTIME_VENDORS:
        return "onnxruntime"
    return "torch"


def load_model(model_ref: str, texts: int = 1, device: str = "auto"):
    """The encoder for `model_ref` that suits embedding about `texts` texts on `device` (an
    object with .runtime, .device, .encode(texts) and .set_threads(n)), loaded once per
    process, never from the net."""
    info = embedder_info(model_ref)
    if info.backend == "hash":
        raise ValueError(f"{model_ref!r} is the test-only hash embedder: it has no model")
    runtime = runtime_for(info, texts, device)
    # References that name the same model at the same precision share one encoder.
    return _load_encoder(
        replace(info, reference=""),
        runtime,
        requested_runtime() == "auto",
        resolve_device(device) if runtime == "torch" else "cpu",
    )


@lru_cache(maxsize=8)
def _load_encoder(info: EmbedderInfo, runtime: str, may_fall_back: bool, device: str = "cpu"):
    from rag_store import onnx_models

    if runtime == "onnxruntime":
        variant = "int8" if info.precision == "int8" else "fp32"
        try:
            return onnx_models.OnnxEncoder(onnx_models.ensure_model(info, variant), info)
        except onnx_models.OnnxUnavailable as exc:
            if variant == "int8" or not may_fall_back:
                raise
            print(f"rag-store: {exc}; embedding with torch instead", file=sys.stderr)
    return TorchEncoder(info, device)


def load_torch_model(info: EmbedderInfo, device: str = "cpu"):
    """The SentenceTransformer of `info` on `device` (any precision shares it), loaded once
    per process."""
    return _load_model(str(info.path), info.dimension, info.max_seq_length, device)


@lru_cache(maxsize=4)
def _load_model(path: str, dimension: int, max_seq_length: int, device: str = "cpu"):
    offline_environment()
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = SentenceTransformer(path, device=device, local_files_only=True)
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


class TorchEncoder:
    """A sentence-transformers model on torch, at its precision (fp32 or bf16 autocast)."""

    runtime = "torch"

    def __init__(self, info: EmbedderInfo, device: str = "cpu"):
        self.info, self.device = info, device
        self._model = load_torch_model(info, device)

    def set_threads(self, threads: int) -> None:
        import torch

        torch.set_num_threads(int(threads))

    def encode(self, texts: list[str]) -> np.ndarray:
        with _precision_context(self.info, self.device):
            return self._model.encode(
                list(texts),
                batch_size=len(texts),
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )


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


def _precision_context(info: EmbedderInfo, device: str = "cpu"):
    """The autocast context that runs the forward pass at `info.precision` on `device`."""
    import torch

    if info.precision == "bf16":
        if device == "cpu":
            _warn_slow_bf16()
        return torch.autocast(device, dtype=torch.bfloat16)
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


def embed_batch(texts: Sequence[str], model_ref: str, encoder=None) -> np.ndarray:
    """One forward pass over `texts` as given: float32 [len(texts), d], unit length; on
    `encoder` (from load_model) when given."""
    info: EmbedderInfo = embedder_info(model_ref)
    if not texts:
        return np.zeros((0, info.dimension), dtype=np.float32)
    if info.backend == "hash":
        return hash_vectors(texts, info)
    encoder = encoder or load_model(model_ref, len(texts))
    return l2_normalise(encoder.encode(list(texts)))


def embed_texts(texts: Sequence[str], model_ref: str, batch_size: int = 0) -> np.ndarray:
    """Embed `texts` in length-sorted batches of `batch_size` (0: the device's default);
    float32 [len(texts), d], unit length, in the order of `texts`."""
    info: EmbedderInfo = embedder_info(model_ref)
    result = np.zeros((len(texts), info.dimension), dtype=np.float32)
    encoder = load_model(model_ref, len(texts)) if texts and info.backend != "hash" else None
    device = getattr(encoder, "device", "cpu")
    for batch in length_sorted_batches(texts, batch_size_for(device, batch_size)):
        result[batch] = embed_batch([texts[i] for i in batch], model_ref, encoder)
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
