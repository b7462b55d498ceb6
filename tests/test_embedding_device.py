"""Where the embedder runs: var embedding_device, its checks and the batch size it implies.

The CPU path runs everywhere; the CUDA comparison runs only where torch sees a GPU (CI has
none, and says so in the skip reason).
"""

import numpy as np
import pytest

from rag_store import embedding
from rag_store.embedder_info import DEFAULT_MODEL, embedder_info
from rag_store.embedding_job import EmbeddingJobConfig

TEXTS = [
    "Calibrate the pH probe with three buffers before the first measurement.",
    "The pump's seals are replaced every two thousand operating hours.",
    "Short text.",
]


def test_device_values_are_checked():
    assert embedding.requested_device(None) == "auto"
    assert embedding.requested_device(" CUDA ") == "cuda"
    with pytest.raises(ValueError, match="embedding_device='tpu': expected one of auto"):
        embedding.requested_device("tpu")


def test_batch_size_follows_the_device_unless_set():
    assert embedding.batch_size_for("cpu") == embedding.DEFAULT_BATCH_SIZE
    assert embedding.batch_size_for("cuda") == embedding.ACCELERATOR_BATCH_SIZE
    assert embedding.batch_size_for("mps") == embedding.ACCELERATOR_BATCH_SIZE
    assert embedding.batch_size_for("cuda", 8) == 8


class _FakeRelation:
    """The one row of int_active_embedder, as the dbt Python model reads it."""

    def select(self, _columns):
        return self

    def fetchone(self):
        return (DEFAULT_MODEL, 384)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"executor": "spark"}, "embedding_executor='spark': expected one of local, ray"),
        ({"ray_workers": "-1"}, "ray_workers must be a whole number >= 0, got -1"),
        ({"ray_workers": "two"}, "ray_workers must be a whole number >= 0, got 'two'"),
        ({"batch_size": "-4"}, "embedding_batch_size must be a whole number >= 0"),
        ({"device": "gpu"}, "embedding_device='gpu'"),
    ],
)
def test_bad_embedding_settings_are_refused_with_their_name(settings, message):
    batch_size = settings.pop("batch_size", "0")
    with pytest.raises(ValueError, match=message):
        EmbeddingJobConfig.from_active_embedder(_FakeRelation(), batch_size, **settings)


def test_settings_from_dbt_config_strings():
    """dbt renders every var into the model config as a string."""
    config = EmbeddingJobConfig.from_active_embedder(
        _FakeRelation(), "0", device="CPU", executor="Ray", ray_address=" auto ", ray_workers="3"
    )
    assert (config.batch_size, config.device, config.executor) == (0, "cpu", "ray")
    assert (config.ray_address, config.ray_workers) == ("auto", 3)


def test_auto_takes_an_accelerator_only_when_torch_sees_one(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert embedding.resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match=r"sees no CUDA device.*embedding_device: auto"):
        embedding.resolve_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert embedding.resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert embedding.resolve_device("auto") == "cuda"
    assert embedding.resolve_device("cpu") == "cpu"


def test_an_accelerator_runs_torch_and_int8_stays_on_the_cpu():
    fp32 = embedder_info(DEFAULT_MODEL)
    assert embedding.runtime_for(fp32, 1, "cuda") == "torch"
    with pytest.raises(ValueError, match="runs on ONNX Runtime on the CPU"):
        embedding.runtime_for(embedder_info(f"int8:{DEFAULT_MODEL}"), 1, "cuda")


def test_the_cpu_encoder_says_where_it_runs(monkeypatch):
    monkeypatch.setenv(embedding.RUNTIME_ENV, "torch")  # not the CPU vendor's choice
    encoder = embedding.load_model(DEFAULT_MODEL, embedding.AUTO_TORCH_FROM_TEXTS, "cpu")
    assert (encoder.runtime, encoder.device) == ("torch", "cpu")
    vectors = embedding.l2_normalise(encoder.encode(TEXTS))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device on this machine")
def test_cuda_vectors_match_the_cpu_and_keep_the_model_id():
    cpu = embedding.load_model(DEFAULT_MODEL, embedding.AUTO_TORCH_FROM_TEXTS, "cpu")
    cuda = embedding.load_model(DEFAULT_MODEL, embedding.AUTO_TORCH_FROM_TEXTS, "cuda")
    assert cuda.device == "cuda"
    on_cpu = embedding.l2_normalise(cpu.encode(TEXTS))
    on_cuda = embedding.l2_normalise(cuda.encode(TEXTS))
    assert (on_cpu * on_cuda).sum(axis=1).min() >= 0.9999
    # The model_id names weights and precision, not the device.
    assert embedder_info(DEFAULT_MODEL).model_id == cpu.info.model_id == cuda.info.model_id


def test_a_few_pending_chunks_are_embedded_here_even_with_the_ray_executor(capsys):
    """Ray's start-up costs more than embedding a change build's chunks in the process."""
    import duckdb

    from rag_store.embedding_job import RAY_FROM_CHUNKS, run_embedding_job

    session = duckdb.connect()
    chunks = session.sql(
        "select 'doc:' || i as chunk_id, 'hash-' || i as chunk_hash, "
        "'text number ' || i as embedding_text, 3 as token_count "
        f"from range({RAY_FROM_CHUNKS - 1}) as t(i)"
    )
    config = EmbeddingJobConfig("hash:all-MiniLM-L6-v2", 384, executor="ray", ray_address="x:1")
    rows = run_embedding_job(session, chunks, None, config)
    assert rows.num_rows == RAY_FROM_CHUNKS - 1
    assert rows.column("embedding").null_count == 0
    assert f"fewer than {RAY_FROM_CHUNKS}" in capsys.readouterr().err
