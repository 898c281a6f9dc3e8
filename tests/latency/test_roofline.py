"""Roofline: peak lookup, bytes per decode step, prefill FLOPs, floors, MBU/MFU."""

import pytest
import torch

from elana_magic.models import preset_config
from elana_magic.latency import roofline as roofline_mod
from elana_magic.latency.roofline import device_name, lookup_peak, prefill_flops, roofline, weight_bytes
from elana_magic.models import PRESETS
from elana_magic.size import measure_size
from elana_magic.size.measure import meta_model


@pytest.mark.parametrize("name, expect", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"), ("NVIDIA RTX A6000", "RTX A6000"), ("NVIDIA L4", "L4"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "Jetson AGX Orin 64GB"), ("NVIDIA Thor", "Jetson AGX Thor"),
    ("NVIDIA Jetson Orin Nano Developer Kit", "Jetson Orin Nano"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "Jetson Orin NX"),
])
def test_peak_lookup(name, expect):
    assert lookup_peak(name).name == expect


def test_orin_modules_have_their_own_bandwidth():
    bw = {m: lookup_peak(f"NVIDIA Jetson {m} Developer Kit").bandwidth for m in ("AGX Orin", "Orin NX", "Orin Nano")}
    assert bw == {"AGX Orin": 204.8e9, "Orin NX": 102.4e9, "Orin Nano": 68e9}
    assert lookup_peak("Orin") is None  # CUDA's bare name: the module is unknown, so no peak rather than a wrong one


def test_jetson_device_name_comes_from_the_device_tree(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    monkeypatch.setattr(roofline_mod, "JETSON_MODEL_PATH", str(model))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Orin")
    assert device_name(torch.device("cuda", 0)) == "NVIDIA Jetson Orin Nano Developer Kit"
    assert lookup_peak(device_name(torch.device("cuda", 0))).bandwidth == 68e9


def test_unknown_device_has_no_peak():
    assert lookup_peak("Intel Xeon") is None and lookup_peak(None) is None


def test_llama_1b_shape_figures():
    # Llama-3.2-1B in bf16 built on the meta device: 1.236 B params, tied embedding, 32 KiB of KV per token.
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(preset_config("llama-3.2-1b"), dtype=torch.bfloat16)
    w = weight_bytes(model)
    assert w["tied"] and w["read"] == w["total"] == pytest.approx(2.471e9, rel=1e-3)
    r = roofline(model, 1, 512, 128, "cuda-graph", torch.device("cpu"))
    assert r["kv_read_bytes"] == 640 * 2 * 16 * 8 * 64 * 2   # 640 slots x 32 KiB of K+V per token
    # 2 x 0.973 B non-embedding params x 512 tokens + causal attention 2·16·512²·2048
    assert prefill_flops(model, 1, 512) == pytest.approx(2 * 0.9733e9 * 512 + 2 * 16 * 512**2 * 2048, rel=1e-3)


def _decode_bytes_agree(model, batch=2, prompt_len=24, gen_len=16):
    for engine in ("eager", "cuda-graph"):
        r = roofline(model, batch, prompt_len, gen_len, engine, torch.device("cpu"))
        size = measure_size(model, batch=[batch], seq_len=[r["decode_context_tokens"]], cross_check=False)
        assert size.rows[0]["cache_bytes"] is not None
        assert r["decode_step_bytes"] == size.model_bytes + size.rows[0]["cache_bytes"]
        assert r["weights_read_bytes"] == size.model_bytes and r["kv_read_bytes"] == size.rows[0]["cache_bytes"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_decode_bytes_are_size_weights_plus_cache_for_every_preset(preset):
    _decode_bytes_agree(meta_model(preset_config(preset)))


def test_decode_bytes_agree_for_sliding_window_and_mamba():
    from transformers import MistralConfig

    sliding = MistralConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, sliding_window=8)
    model = meta_model(sliding)
    _decode_bytes_agree(model)
    r = roofline(model, 1, 24, 16, "eager", torch.device("cpu"))
    assert r["kv_read_bytes"] == 2 * 8 * 2 * 2 * 8 * 4  # layers x window x kv heads x (K+V) x head_dim x fp32
    mamba = meta_model(preset_config("mamba2-1.3b"))
    _decode_bytes_agree(mamba)
    short, long = (roofline(mamba, 1, p, 16, "eager", torch.device("cpu"))["kv_read_bytes"] for p in (16, 512))
    assert short == long > 0  # the Mamba state does not grow with the context


def test_pruned_model_reads_fewer_bytes(tiny_llama):
    import copy

    pruned = copy.deepcopy(tiny_llama)
    pruned.model.layers = pruned.model.layers[:1]
    pruned.config.num_hidden_layers = 1
    full, cut = (roofline(m, 1, 16, 8, "eager", torch.device("cpu"))["decode_step_bytes"] for m in (tiny_llama, pruned))
    assert cut < full
    _decode_bytes_agree(pruned)


def test_floors_and_utilisation_with_overrides(tiny_llama):
    r = roofline(tiny_llama, batch=2, prompt_len=16, gen_len=8, engine="cuda-graph", device=torch.device("cpu"),
                 ttft_s=1e-3, tpot_s=1e-4, peak_bw=1e9, peak_flops=1e12)
    assert r["peak_source"] == "override"
    c = tiny_llama.config
    assert r["kv_read_bytes"] == 2 * 24 * c.num_hidden_layers * c.num_key_value_heads * 2 * c.head_dim * 4
    assert r["tpot_floor_ms"] == pytest.approx(r["decode_step_bytes"] / 1e9 * 1e3)
    assert r["mbu"] == pytest.approx(r["decode_step_bytes"] / 1e-4 / 1e9)
    assert r["mfu"] == pytest.approx(r["prefill_flops"] / 1e-3 / 1e12)
    assert r["ttlt_floor_ms"] == pytest.approx(r["ttft_floor_ms"] + 7 * r["tpot_floor_ms"])


def test_no_peak_on_cpu(tiny_llama):
    r = roofline(tiny_llama, 1, 8, 4, "eager", torch.device("cpu"), ttft_s=1e-3, tpot_s=1e-3)
    assert r["mbu"] is None and r["tpot_floor_ms"] is None and r["achieved_bw_bytes_per_s"] > 0


def test_dynamic_int8_model_has_a_roofline(tiny_llama):
    """torch.ao's dynamic int8 Linear gives its weight by a call: the LM head counts one byte per weight."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's eager quantization is deprecated
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(tiny_llama), {torch.nn.Linear},
                                                           dtype=torch.qint8)
    w = weight_bytes(quantized)
    assert w["lm_head"] == 512 * 64 and not w["tied"]
    r = roofline(quantized, 1, 8, 4, "eager", torch.device("cpu"), tpot_s=0.01)
    assert r["decode_step_bytes"] > 0 and r["achieved_bw_bytes_per_s"] > 0
