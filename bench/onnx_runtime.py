"""ONNX Runtime as an embedding backend, measured against the torch path rag-store ships.

Exports the default model's transformer to ONNX (torch's TorchScript exporter), optionally
quantises it to int8 (dynamic, per-tensor and per-channel), then embeds the same
full-window texts as embed_throughput.py with ONNX Runtime: tokenizer → session → mean
pooling → L2 norm, the same arithmetic sentence-transformers does. Prints chunks/s and the
smallest cosine to the torch fp32 vector of each text.

ONNX Runtime is not a rag-store dependency (these figures are why); install it into the
venv first, from PyPI:

    .venv/bin/pip install onnxruntime==1.31.1 onnx==1.23.2
    .venv/bin/python bench/onnx_runtime.py --texts 128
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embed_throughput import full_window_texts

from rag_store.chunking import load_tokenizer
from rag_store.embedder_info import DEFAULT_MODEL, embedder_info


def export_onnx(model_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    class LastHiddenState(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    module = LastHiddenState(AutoModel.from_pretrained(str(model_path)).eval())
    sample = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        module,
        (sample, sample, torch.zeros_like(sample)),
        str(target),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            name: axes
            for name in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")
        },
        opset_version=17,
        dynamo=False,
    )


def ort_embedder(onnx_file: Path, tokenizer_file: Path, window: int, threads: int):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(window)
    tokenizer.enable_padding()

    def embed(texts: list[str]) -> np.ndarray:
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    return embed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args(argv)
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("needs onnxruntime and onnx: see this script's docstring", file=sys.stderr)
        return 2

    import torch

    from rag_store.embedding import embed_texts

    info = embedder_info(DEFAULT_MODEL)
    tokenizer = load_tokenizer(str(info.tokenizer_file))
    texts = full_window_texts(args.texts, info.window_tokens, tokenizer, args.seed)

    def timed(embed) -> tuple[np.ndarray, float]:
        embed(texts[:8])  # first run, untimed
        started = time.perf_counter()
        parts = [
            embed(texts[i : i + args.batch_size]) for i in range(0, len(texts), args.batch_size)
        ]
        return np.vstack(parts), time.perf_counter() - started

    reference, torch_s = timed(lambda batch: embed_texts(batch, DEFAULT_MODEL, len(batch)))
    rows = [("torch fp32 (rag-store default)", torch_s, 1.0)]
    bf16, bf16_s = timed(lambda batch: embed_texts(batch, f"bf16:{DEFAULT_MODEL}", len(batch)))
    rows.append(("torch bf16 autocast (bf16:)", bf16_s, (bf16 * reference).sum(axis=1).min()))

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as scratch:
        fp32_file = Path(scratch) / "model.onnx"
        export_onnx(info.path, fp32_file)
        variants = {"onnxruntime fp32": fp32_file}
        for label, per_channel in (("per-tensor", False), ("per-channel", True)):
            quantised = Path(scratch) / f"model-int8-{label}.onnx"
            quantize_dynamic(
                str(fp32_file), str(quantised), weight_type=QuantType.QInt8, per_channel=per_channel
            )
            variants[f"onnxruntime int8 dynamic, {label}"] = quantised
        for label, onnx_file in variants.items():
            embed = ort_embedder(onnx_file, info.tokenizer_file, info.max_seq_length, threads)
            vectors, seconds = timed(embed)
            rows.append((label, seconds, (vectors * reference).sum(axis=1).min()))

    print(
        f"\n{len(texts)} texts of {info.window_tokens} tokens, batch {args.batch_size}, "
        f"{threads} threads, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}\n"
    )
    print("| backend | seconds | chunks/s | min cosine to torch fp32 |")
    print("|---|---:|---:|---:|")
    for label, seconds, cosine in rows:
        print(f"| {label} | {seconds:.1f} | {len(texts) / seconds:.1f} | {cosine:.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
