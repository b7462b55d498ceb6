#!/usr/bin/env bash
# On a machine with a CUDA GPU: build the SciFact store with `embedding_device: cuda`, then
# print the embedding rate, the cosine between the GPU's chunk vectors and the CPU's for the
# same texts, and nDCG@10 per search mode (beside the published reference scores).
#
#   bash bench/gpu_check.sh [collection]     # default scifact, from ../shared/eval
#
# GPU_CHECK_DEVICE=cpu runs the same steps without a GPU (a dry run of the script itself:
# the cosine is then CPU against CPU).
#
# The project pins the CPU build of torch. On the GPU machine install torch's CUDA build of
# the same version first (e.g. `.venv/bin/pip install torch==2.13.0 --index-url
# https://download.pytorch.org/whl/cu126`); the script stops with that advice otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
collection="${1:-scifact}"
device="${GPU_CHECK_DEVICE:-cuda}"
make setup >/dev/null
BIN=.venv/bin
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$BIN/python" - "$device" <<'PY'
import sys

import torch

if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(
        f"gpu_check: torch {torch.__version__} sees no CUDA device; on a GPU machine install "
        "torch's CUDA build of the same version into .venv (see the script's header)"
    )
name = torch.cuda.get_device_name(0) if sys.argv[1] == "cuda" else sys.argv[1]
print(f"gpu_check: {name}, torch {torch.__version__}")
PY

work="$(mktemp -d "${TMPDIR:-/tmp}/rag-store-gpu-check.XXXXXX")"
echo "gpu_check: building the $collection store in $work (embedding_device: $device)"
"$BIN/rag-store" eval --collection "$collection" --keep "$work" \
    --vars "{\"embedding_device\": \"$device\"}" 2> >(tee "$work/build.log" >&2) | tee "$work/eval.md"

echo
grep -h "chunk_embeddings: embedded" "$work/build.log" | sed 's/^/gpu_check: /' || true

"$BIN/python" - "$work/eval.duckdb" <<'PY'
import sys

import duckdb
import numpy as np

from rag_store.embedding import l2_normalise, load_model

SAMPLE = 512
with duckdb.connect(sys.argv[1], read_only=True) as conn:
    model_ref, model_id = conn.execute(
        "select model_reference, model_id from int_active_embedder"
    ).fetchone()
    rows = conn.execute(
        """
        select any_value(chunks.embedding_text), any_value(vectors.embedding)
        from int_document_chunks as chunks
        inner join chunk_embeddings as vectors
            on chunks.chunk_hash = vectors.chunk_hash and vectors.model_id = $model_id
        where vectors.error is null
        group by chunks.chunk_hash
        order by chunks.chunk_hash
        limit $sample
        """,
        {"model_id": model_id, "sample": SAMPLE},
    ).fetchall()
texts = [text for text, _ in rows]
on_gpu = np.array([vector for _, vector in rows], dtype=np.float32)
encoder = load_model(model_ref, len(texts), "cpu")
on_cpu = np.concatenate(
    [l2_normalise(encoder.encode(texts[start : start + 32])) for start in range(0, len(texts), 32)]
)
cosines = (on_cpu * on_gpu).sum(axis=1)
verdict = "the shared model_id holds" if cosines.min() >= 0.9999 else "BELOW 0.9999"
print(
    f"gpu_check: CPU vs stored (GPU) cosine over {len(texts)} chunks: min {cosines.min():.6f}, "
    f"mean {cosines.mean():.6f} ({verdict}); model_id {model_id}"
)
PY
echo "gpu_check: nDCG@10 above (eval.md in $work)"
