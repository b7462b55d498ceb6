"""Model resolution and fingerprinting, on the real bundled model files (no torch)."""

from __future__ import annotations

import shutil

import pytest

from rag_store.embedder_info import ModelNotFoundError, embedder_info, resolve_model_path


def test_default_model_facts(default_info):
    assert default_info.dimension == 384
    assert default_info.max_seq_length == 256
    assert default_info.special_tokens == 2
    assert default_info.window_tokens == 254
    assert default_info.model_id.startswith("all-MiniLM-L6-v2@")
    assert default_info.model_id.endswith("/d384/l2/w256")


def test_aliases_resolve_to_the_same_model(default_info):
    other = embedder_info("sentence-transformers/all-MiniLM-L6-v2")
    assert other.model_id == default_info.model_id


def test_a_copied_directory_with_changed_window_gets_another_model_id(tmp_path, default_info):
    copy = tmp_path / "my-model"
    shutil.copytree(default_info.path, copy)
    same = embedder_info(str(copy))
    assert same.weights_digest == default_info.weights_digest
    (copy / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    embedder_info.cache_clear()
    changed = embedder_info(str(copy))
    assert changed.window_tokens == 126
    assert changed.model_id != same.model_id


def test_unknown_models_fail_with_a_clear_message(tmp_path):
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        resolve_model_path("no-such-org/no-such-model")
    with pytest.raises(ModelNotFoundError, match="empty"):
        resolve_model_path("  ")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"tokenizer\.json"):
        embedder_info(str(tmp_path / "empty"))


def test_precision_prefix_gets_its_own_model_id(default_info):
    bf16 = embedder_info("bf16:all-MiniLM-L6-v2")
    assert bf16.precision == "bf16"
    assert bf16.model_id == default_info.model_id + "/bf16"
    assert (bf16.path, bf16.dimension, bf16.window_tokens, bf16.tokenizer_digest) == (
        default_info.path,
        default_info.dimension,
        default_info.window_tokens,
        default_info.tokenizer_digest,
    )
    assert embedder_info("BF16: all-MiniLM-L6-v2").model_id == bf16.model_id
    assert embedder_info("fp32:all-MiniLM-L6-v2").model_id == default_info.model_id


@pytest.mark.parametrize(
    "reference", ["bf16:", "bf16:bf16:all-MiniLM-L6-v2", "bf16:hash:all-MiniLM-L6-v2"]
)
def test_precision_prefix_needs_one_plain_model(reference):
    with pytest.raises(ModelNotFoundError, match=r"no model|plain model"):
        embedder_info(reference)
