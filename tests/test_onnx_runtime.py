"""The ONNX Runtime engine: the checked fp32 export stands in for torch under the same
model_id, int8 is its own model_id, and every way it can fail says why in one line.

Real model throughout: the export is made once per machine into the user cache (the first
test to need it pays ~15 s) and is what every later build and search here uses.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_store import embedding, onnx_models
from rag_store.embedder_info import DEFAULT_MODEL, INT8_RECIPE, embedder_info

pytestmark = pytest.mark.xdist_group("onnx-runtime")


@pytest.fixture(scope="module")
def engines():
    """The three encoders of the default model, loaded once for the module."""
    info = embedder_info(DEFAULT_MODEL)
    return {
        "torch": embedding.TorchEncoder(info),
        "onnxruntime": onnx_models.OnnxEncoder(onnx_models.ensure_model(info, "fp32"), info),
        "int8": embedding.load_model(f"int8:{DEFAULT_MODEL}"),
    }


def unit(vectors) -> np.ndarray:
    return embedding.l2_normalise(np.asarray(vectors))


texts = st.lists(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=400
    )
    | st.sampled_from(["", " ", "word " * 400, "Crème brûlée — 数据", "\n\n# Heading\n\ntext"]),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=texts)
def test_the_fp32_export_reproduces_torch_on_any_text(engines, batch):
    # Any text, padded beside others of any length, truncated past the window: the vector
    # is torch's, which is what lets both engines share one model_id.
    expected = unit(engines["torch"].encode(batch))
    got = unit(engines["onnxruntime"].encode(batch))
    assert (expected * got).sum(axis=1).min() >= onnx_models.FP32_MIN_COSINE


def test_int8_is_its_own_model_and_stays_close(engines):
    fp32, int8 = embedder_info(DEFAULT_MODEL), embedder_info(f"int8:{DEFAULT_MODEL}")
    assert int8.model_id == f"{fp32.model_id}/{INT8_RECIPE}"
    assert (int8.path, int8.dimension, int8.tokenizer_digest) == (
        fp32.path,
        fp32.dimension,
        fp32.tokenizer_digest,
    )
    assert engines["int8"].runtime == "onnxruntime"
    batch = ["How do I calibrate the pH probe?", "Oil the bicycle chain monthly. " * 40]
    cosines = (unit(engines["torch"].encode(batch)) * unit(engines["int8"].encode(batch))).sum(1)
    assert 0.95 < cosines.min() < onnx_models.FP32_MIN_COSINE  # close, but other vectors


@pytest.mark.parametrize(
    ("vendor", "bulk"),
    [("GenuineIntel", "torch"), ("AuthenticAMD", "onnxruntime"), ("", "torch")],
)
def test_auto_picks_the_engine_by_the_work_and_the_cpu(monkeypatch, vendor, bulk):
    fp32 = embedder_info(DEFAULT_MODEL)
    monkeypatch.delenv(embedding.RUNTIME_ENV, raising=False)
    monkeypatch.setattr(embedding, "cpu_vendor", lambda: vendor)
    assert embedding.runtime_for(fp32, 1) == "onnxruntime"
    assert embedding.runtime_for(fp32, embedding.AUTO_TORCH_FROM_TEXTS - 1) == "onnxruntime"
    assert embedding.runtime_for(fp32, embedding.AUTO_TORCH_FROM_TEXTS) == bulk
    assert embedding.runtime_for(embedder_info(f"bf16:{DEFAULT_MODEL}"), 1) == "torch"
    assert embedding.runtime_for(embedder_info(f"int8:{DEFAULT_MODEL}"), 10**6) == "onnxruntime"
    monkeypatch.setenv(embedding.RUNTIME_ENV, "torch")
    assert embedding.runtime_for(fp32, 1) == "torch"
    monkeypatch.setenv(embedding.RUNTIME_ENV, "tensorflow")
    with pytest.raises(ValueError, match="expected one of auto, torch, onnxruntime"):
        embedding.runtime_for(fp32, 1)


def test_a_question_loads_without_torch_once_exported(engines):
    # The CLI and the server embed single questions: on ONNX Runtime, torch is never imported.
    code = (
        "import sys\n"
        "from rag_store.embedding import embed_query\n"
        f"vector = embed_query('pH probe calibration', {DEFAULT_MODEL!r})\n"
        "print(len(vector), 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != embedding.RUNTIME_ENV}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.split() == ["384", "False"]


def test_an_unwritable_cache_is_one_line_and_auto_falls_back_to_torch(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("RAG_STORE_CACHE_DIR", str(blocker / "cache"))
    info = embedder_info(DEFAULT_MODEL)
    with pytest.raises(onnx_models.OnnxUnavailable) as failure:
        onnx_models.ensure_model(info, "int8")
    message = str(failure.value)
    assert "\n" not in message and "RAG_STORE_CACHE_DIR" in message and str(blocker) in message
    embedding._load_encoder.cache_clear()
    try:
        assert embedding.load_model(DEFAULT_MODEL, 1).runtime == "torch"
        with pytest.raises(onnx_models.OnnxUnavailable):
            embedding.load_model(f"int8:{DEFAULT_MODEL}")
    finally:
        embedding._load_encoder.cache_clear()


def test_an_export_that_fails_its_check_is_never_used(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RAG_STORE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(onnx_models, "FP32_MIN_COSINE", 1.01)  # no export can pass
    info = embedder_info(DEFAULT_MODEL)
    with pytest.raises(onnx_models.OnnxUnavailable, match="does not reproduce its torch"):
        onnx_models.ensure_model(info, "fp32")
    assert '"passed": false' in onnx_models.files(info).report.read_text()
    embedding._load_encoder.cache_clear()
    try:
        assert embedding.load_model(DEFAULT_MODEL, 1).runtime == "torch"
    finally:
        embedding._load_encoder.cache_clear()
    assert "embedding with torch instead" in capfd.readouterr().err


def test_a_damaged_export_names_the_file_to_delete(tmp_path, monkeypatch, engines):
    monkeypatch.setenv("RAG_STORE_CACHE_DIR", str(tmp_path))
    info = embedder_info(DEFAULT_MODEL)
    paths = onnx_models.files(info)
    paths.fp32.parent.mkdir(parents=True)
    paths.fp32.write_bytes(b"not an onnx graph")
    paths.report.write_text(f'{{"passed": true, "export_version": "{onnx_models.EXPORT_VERSION}"}}')
    with pytest.raises(onnx_models.OnnxUnavailable) as failure:
        onnx_models.OnnxEncoder(onnx_models.ensure_model(info, "fp32"), info)
    assert str(paths.fp32) in str(failure.value) and "delete that file" in str(failure.value)
