"""Roofline: peak lookup, bytes per decode step, prefill FLOPs, floors, MBU/MFU."""

import pytest
import torch

from elana_magic.models import preset_config, random_model
from elana_magic.latency.roofline import kv_bytes_per_token, lookup_peak, prefill_flops, roofline, weight_bytes


@pytest.mark.parametrize("name, expect", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"), ("NVIDIA RTX A6000", "RTX A6000"), ("NVIDIA L4", "L4"),
    ("Orin", "Jetson AGX Orin 64GB"), ("NVIDIA Thor", "Jetson AGX Thor"),
])
def test_peak_lookup(name, expect):
    assert lookup_peak(name).name == expect


def test_unknown_device_has_no_peak():
    assert lookup_peak("Intel Xeon") is None and lookup_peak(None) is None


def test_llama_1b_shape_figures():
    # Llama-3.2-1B in bf16 built on the meta device: 1.236 B params, tied embedding, 32 KiB of KV per token.
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(preset_config("llama-3.2-1b"), dtype=torch.bfloat16)
    w = weight_bytes(model)
    assert w["tied"] and w["read"] == w["total"] == pytest.approx(2.471e9, rel=1e-3)
    assert kv_bytes_per_token(model, 2) == 2 * 16 * 8 * 64 * 2
    # 2 x 0.973 B non-embedding params x 512 tokens + causal attention 2·16·512²·2048
    assert prefill_flops(model, 1, 512) == pytest.approx(2 * 0.9733e9 * 512 + 2 * 16 * 512**2 * 2048, rel=1e-3)


def test_untied_model_skips_input_embedding(tiny_llama):
    w = weight_bytes(tiny_llama)
    assert not w["tied"] and w["read"] == w["total"] - w["embedding"]


def test_floors_and_utilisation_with_overrides(tiny_llama):
    r = roofline(tiny_llama, batch=2, prompt_len=16, gen_len=8, engine="cuda-graph", device=torch.device("cpu"),
                 ttft_s=1e-3, tpot_s=1e-4, peak_bw=1e9, peak_flops=1e12)
    assert r["peak_source"] == "override"
    assert r["kv_read_bytes"] == 2 * 24 * kv_bytes_per_token(tiny_llama, 4)
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
