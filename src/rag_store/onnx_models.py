"""ONNX files of an embedder, made once per machine from its own weights, never fetched.

The whole sentence-transformers pipeline (transformer, pooling, any Dense layer) is exported
to one ONNX graph by torch's exporter, so ONNX Runtime computes the same sentence vector the
torch path does. An export is trusted only after it has been checked against torch on probe
texts (short, long enough to be truncated, accents, CJK, code): every cosine must be at least
FP32_MIN_COSINE. Only then may the fp32 graph stand in for torch under the same model_id.
The int8 graph is the checked fp32 graph with its matrix products quantised to int8 (weights
per output channel, activations per batch at run time); it computes other vectors, so it has
its own model_id (`int8:` prefix, see embedder_info).

Files live under the cache directory (env RAG_STORE_CACHE_DIR, else ~/.cache/rag-store),
keyed by the weights and tokenizer digests and the export recipe; they are written to a
temporary name and renamed into place, so a killed export leaves nothing half-written and two
processes exporting at once both end with the same good file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag_store.embedder_info import EmbedderInfo, offline_environment

# Bump when the exported graph or the quantisation recipe changes: old files are then
# ignored (and the int8 model_id changes with INT8_RECIPE, see embedder_info).
EXPORT_VERSION = "1"
FP32_MIN_COSINE = 0.9999
OPSET = 17

PROBE_TEXTS = (
    "warm up",
    "Which buffers do I need for a three-point pH calibration of the TW-400 probe?",
    "Crème brûlée, naïve café owners and the Zürich Straße: accents survive tokenisation.",
    "数据仓库中的文档切分与向量检索 — 日本語のテキストも含む。",
    "def embed(texts: list[str]) -> np.ndarray:\n    return model.encode(texts)  # code",
    " ".join(f"word{i} section {i % 7} of the long handbook" for i in range(200)),
)


class OnnxUnavailable(RuntimeError):
    """An ONNX file for this embedder cannot be made or used here; the message says why and
    what to do, in one line."""


def cache_root() -> Path:
    configured = os.environ.get("RAG_STORE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag-store"


def model_dir(info: EmbedderInfo) -> Path:
    key = f"{info.name}-{info.weights_digest[:16]}-{info.tokenizer_digest[:12]}-v{EXPORT_VERSION}"
    return cache_root() / "onnx" / key


@dataclass(frozen=True)
class OnnxFiles:
    fp32: Path
    int8: Path
    report: Path


def files(info: EmbedderInfo) -> OnnxFiles:
    folder = model_dir(info)
    return OnnxFiles(folder / "model-fp32.onnx", folder / "model-int8.onnx", folder / "check.json")


def runtime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def ensure_model(info: EmbedderInfo, variant: str) -> Path:
    """The checked ONNX file of `info` for `variant` ("fp32" or "int8"), made if missing."""
    if not runtime_available():
        raise OnnxUnavailable(
            "onnxruntime is not installed in this environment (run `make setup`, or "
            "`pip install onnxruntime onnx`)"
        )
    paths = files(info)
    target = paths.int8 if variant == "int8" else paths.fp32
    if target.exists() and _checked(paths):
        return target
    try:
        paths.fp32.parent.mkdir(parents=True, exist_ok=True)
        if not (paths.fp32.exists() and _checked(paths)):
            _export_and_check(info, paths)
        if variant == "int8" and not paths.int8.exists():
            _quantise(paths.fp32, paths.int8)
    except OSError as exc:
        raise OnnxUnavailable(
            f"cannot write the ONNX export of {info.name} under {paths.fp32.parent}: "
            f"{exc.strerror or exc}; free space there or point RAG_STORE_CACHE_DIR at a "
            "writable directory"
        ) from exc
    return target


def _checked(paths: OnnxFiles) -> bool:
    try:
        report = json.loads(paths.report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(report.get("passed")) and report.get("export_version") == EXPORT_VERSION


def _atomic_write(target: Path, write) -> None:
    """Run write(tmp_path), then rename the finished file onto `target`."""
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _log(message: str) -> None:
    print(f"[rag-store] {message}", file=sys.stderr, flush=True)


def _export_and_check(info: EmbedderInfo, paths: OnnxFiles) -> None:
    """Export the sentence-transformers pipeline of `info` and compare it with torch."""
    offline_environment()
    import torch

    from rag_store.embedding import load_torch_model

    _log(f"exporting {info.name} to ONNX once (under {paths.fp32.parent})")
    model = load_torch_model(info)
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    input_names = list(tokenize(["a"]).keys())

    class SentencePipeline(torch.nn.Module):
        def __init__(self, pipeline):
            super().__init__()
            self.pipeline = pipeline

        def forward(self, *tensors):
            features = dict(zip(input_names, tensors, strict=True))
            return self.pipeline(features)["sentence_embedding"]

    sample = tokenize(["a first text", "a second, longer text"])
    axes = {0: "batch", 1: "tokens"}

    def export(tmp: Path) -> None:
        # The tracer warns about every data-dependent branch of the model code; the check
        # against torch below is what tells whether the graph is right.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                SentencePipeline(model).eval(),
                tuple(sample[name] for name in input_names),
                str(tmp),
                input_names=input_names,
                output_names=["sentence_embedding"],
                dynamic_axes={
                    **{name: axes for name in input_names},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )

    _atomic_write(paths.fp32, export)
    with torch.no_grad():
        expected = model.encode(
            list(PROBE_TEXTS), batch_size=len(PROBE_TEXTS), convert_to_numpy=True
        )
    session = OnnxEncoder(paths.fp32, info, threads=1)
    got = session.encode(list(PROBE_TEXTS))
    cosines = _row_cosines(expected, got)
    passed = bool(cosines.min() >= FP32_MIN_COSINE)
    report = {
        "export_version": EXPORT_VERSION,
        "passed": passed,
        "min_cosine": float(cosines.min()),
        "torch": torch.__version__,
        "onnxruntime": _onnxruntime_version(),
    }

    def write_report(tmp: Path) -> None:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    _atomic_write(paths.report, write_report)
    if not passed:
        raise OnnxUnavailable(
            f"the ONNX export of {info.name} does not reproduce its torch vectors "
            f"(smallest cosine {cosines.min():.6f} < {FP32_MIN_COSINE}); use the torch "
            "runtime (RAG_STORE_EMBEDDING_RUNTIME=torch)"
        )


def _quantise(fp32: Path, target: Path) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # onnx missing
        raise OnnxUnavailable(
            f"int8 quantisation needs the onnx package ({exc}); run `make setup`"
        ) from exc
    _log(f"quantising {fp32.name} to int8 once")

    def quantise(tmp: Path) -> None:
        # The quantiser logs advice about its own pre-processing step on the root logger.
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
        quantize_dynamic(
            str(fp32),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            # The exporter's intermediate tensors carry no type for the quantiser's own
            # shape inference; they are all float.
            extra_options={"DefaultTensorType": 1},
        )

    _atomic_write(target, quantise)


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxEncoder:
    """An exported embedder run by ONNX Runtime: text → tokenizer → graph → sentence vector
    (not yet normalised), as SentenceTransformer.encode computes it."""

    runtime = "onnxruntime"
    device = "cpu"

    def __init__(self, onnx_file: Path, info: EmbedderInfo, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.info = info
        self._file = onnx_file
        self._threads = int(threads or cpu_threads())
        self._session = self._open(ort)
        self._inputs = [item.name for item in self._session.get_inputs()]
        tokenizer = Tokenizer.from_file(str(info.tokenizer_file))
        tokenizer.enable_truncation(info.max_seq_length)
        pad_id, pad_token = _pad_token(info, tokenizer)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer

    def _open(self, ort):
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(
                str(self._file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise OnnxUnavailable(
                f"ONNX Runtime cannot open {self._file}: {str(exc).splitlines()[0][:200]}; "
                "delete that file to have it made again"
            ) from exc

    def set_threads(self, threads: int) -> None:
        if int(threads) != self._threads:
            import onnxruntime as ort

            self._threads = int(threads)
            self._session = self._open(ort)

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([item.ids for item in encodings], dtype=np.int64)
        columns = {
            "input_ids": ids,
            "attention_mask": np.array([item.attention_mask for item in encodings], np.int64),
            "token_type_ids": np.array([item.type_ids for item in encodings], dtype=np.int64),
        }
        feeds = {name: columns[name] for name in self._inputs}
        return np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)


def _pad_token(info: EmbedderInfo, tokenizer) -> tuple[int, str]:
    """The padding token the model's tokenizer config names ([PAD] for BERT-like models)."""
    config_file = info.path / "tokenizer_config.json"
    token = None
    if config_file.exists():
        try:
            token = json.loads(config_file.read_text(encoding="utf-8")).get("pad_token")
        except ValueError:
            token = None
    if isinstance(token, dict):
        token = token.get("content")
    for candidate in (token, "[PAD]", "<pad>"):
        if candidate and tokenizer.token_to_id(candidate) is not None:
            return tokenizer.token_to_id(candidate), candidate
    return 0, tokenizer.id_to_token(0) or "[PAD]"
