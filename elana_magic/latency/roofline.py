"""Roofline context for measured latencies: what the hardware could do at best.

* Decode is bandwidth-bound: every step reads the weights once plus the cache attention spans
  (every slot of a static cache, ``prompt_len + gen_len``; the live context of a dynamic one, its
  mean ``prompt_len + gen_len // 2``). Both come from ``%elana_size``'s accounting (``measure_size``
  on the model: storage bytes, tied weights once, quantized/packed layers as stored; the cache of
  sliding-window, MLA and Mamba layers from ``size.cache_shapes``), not from a second formula; an
  untied input embedding counts whole (a step reads only its B rows: a small overcount).
  Bytes / TPOT = achieved bandwidth; over the peak = MBU; bytes / peak = the TPOT floor.
* Prefill is compute-bound: 2 FLOPs per non-embedding weight per token, plus causal attention
  (2·L·T²·d per sequence), plus the LM head for the last position. FLOPs / TTFT over the peak = MFU.

Peaks are datasheet figures (dense 16-bit tensor-core FLOP/s, memory bandwidth, and memory capacity for
``latency.projection``'s fit) looked up by the device name; ``peak_bw``/``peak_flops`` override them.
CUDA names every Jetson Orin module just "Orin", so on Jetson the name is the board's
(``/proc/device-tree/model``, e.g. "NVIDIA Jetson Orin Nano Developer Kit"); a bare "Orin" gets no peak
rather than the wrong module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Peak:
    name: str
    bandwidth: float   # bytes/s
    flops: float       # dense bf16/fp16 tensor FLOP/s
    source: str = "datasheet"
    memory_gb: float | None = None  # datasheet memory capacity (GB; on Jetson shared with the CPU and OS)


# Ordered: the first whose every keyword is in the (lower-cased) device name wins.
DEVICE_PEAKS: list[tuple[tuple[str, ...], Peak]] = [
    (("h200",), Peak("H200", 4.8e12, 989e12, memory_gb=141)),
    (("h100", "pcie"), Peak("H100 PCIe", 2.0e12, 756e12, memory_gb=80)),
    (("h100", "nvl"), Peak("H100 NVL", 3.9e12, 835e12, memory_gb=94)),
    (("h100",), Peak("H100 SXM", 3.35e12, 989e12, memory_gb=80)),
    (("a100", "pcie", "80"), Peak("A100 PCIe 80GB", 1.935e12, 312e12, memory_gb=80)),
    (("a100", "80"), Peak("A100 SXM 80GB", 2.039e12, 312e12, memory_gb=80)),
    (("a100",), Peak("A100 40GB", 1.555e12, 312e12, memory_gb=40)),
    (("a6000",), Peak("RTX A6000", 768e9, 154.8e12, memory_gb=48)),
    (("l40s",), Peak("L40S", 864e9, 362e12, memory_gb=48)),
    (("l4",), Peak("L4", 300e9, 121e12, memory_gb=24)),
    (("thor",), Peak("Jetson AGX Thor", 273e9, 259e12, "datasheet; FLOP/s derived from 2070 FP4 sparse ÷ 8",
                     memory_gb=128)),
    (("orin", "nano"), Peak("Jetson Orin Nano", 68e9, 10e12, "datasheet (8GB); FLOP/s derived from 40 INT8 sparse "
                            "TOPS ÷ 4", memory_gb=8)),
    (("orin", "nx"), Peak("Jetson Orin NX", 102.4e9, 25e12, "datasheet (16GB); FLOP/s derived from 100 INT8 sparse "
                          "TOPS ÷ 4", memory_gb=16)),
    (("agx", "orin"), Peak("Jetson AGX Orin 64GB", 204.8e9, 42.5e12, "datasheet; FLOP/s derived from 170 INT8 sparse "
                           "TOPS ÷ 4", memory_gb=64)),
]

JETSON_MODEL_PATH = "/proc/device-tree/model"


def lookup_peak(device_name: str | None) -> Peak | None:
    if not device_name:
        return None
    name = device_name.lower()
    for keys, peak in DEVICE_PEAKS:
        if all(k in name for k in keys):
            return peak
    return None


def jetson_model() -> str | None:
    """The board's name on a Jetson ("NVIDIA Jetson AGX Orin Developer Kit"), else None."""
    try:
        with open(JETSON_MODEL_PATH, "rb") as f:
            name = f.read().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return None
    return name if "jetson" in name.lower() else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if any(k in name.lower() for k in ("orin", "thor")):  # CUDA doesn't name the module
            return jetson_model() or name
        return name
    import platform

    return platform.processor() or platform.machine() or "cpu"


def _text_config(model):
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    return config


def _weight_tensor(module):
    """A module's weight tensor; quantized modules (torch.ao's dynamic int8 Linear) give it by a call."""
    weight = getattr(module, "weight", None)
    return weight() if callable(weight) else weight


def weight_bytes(model) -> dict[str, int]:
    """Parameter bytes split for the FLOP counts: total, the input embedding and LM head, tied or not
    (the bytes a step reads come from ``decode_step_bytes``)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights appear once
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb_w, head_w = _weight_tensor(emb), _weight_tensor(head)
    emb_bytes = emb_w.numel() * emb_w.element_size() if emb_w is not None else 0
    head_bytes = head_w.numel() * head_w.element_size() if head_w is not None else 0
    tied = emb_w is not None and head_w is not None and emb_w.data_ptr() == head_w.data_ptr()
    read = total if tied else total - emb_bytes
    return {"total": total, "read": read, "embedding": emb_bytes, "lm_head": head_bytes, "tied": tied}


def prefill_flops(model, batch: int, prompt_len: int) -> float:
    """2·N·T·B for the non-embedding weights + causal attention 2·L·T²·d·B + the LM head on the last token."""
    w = weight_bytes(model)
    n_params = sum(p.numel() for p in model.parameters())
    emb_n = w["embedding"] // max(1, _elt(model))
    head_n = w["lm_head"] // max(1, _elt(model))
    body = n_params - emb_n - (0 if w["tied"] else head_n)
    c = _text_config(model)
    layers = getattr(c, "num_hidden_layers", 0) or 0
    heads = getattr(c, "num_attention_heads", 0) or 0
    head_dim = (getattr(c, "head_dim", None) or (c.hidden_size // heads if heads else 0)) if c is not None else 0
    attn = 2 * layers * prompt_len * prompt_len * heads * head_dim * batch
    return 2.0 * body * prompt_len * batch + attn + 2.0 * head_n * batch


def decode_flops(model, batch: int, context: int) -> float:
    w = weight_bytes(model)
    n_params = sum(p.numel() for p in model.parameters())
    emb_n = w["embedding"] // max(1, _elt(model))
    body = n_params - (0 if w["tied"] else emb_n)
    c = _text_config(model)
    layers = getattr(c, "num_hidden_layers", 0) or 0
    heads = getattr(c, "num_attention_heads", 0) or 0
    head_dim = (getattr(c, "head_dim", None) or (c.hidden_size // heads if heads else 0)) if c is not None else 0
    return 2.0 * body * batch + 4.0 * layers * context * heads * head_dim * batch


def _elt(model) -> int:
    for p in model.parameters():
        return p.element_size()
    return 2


def decode_step_bytes(model, batch: int, context: int) -> dict[str, Any]:
    """Bytes one decode step reads at ``context`` tokens, from ``measure_size`` (the same accounting
    as ``%elana_size``): ``{weights, cache, total, cache_known}``."""
    from ..size import measure_size

    size = measure_size(model, batch=[batch], seq_len=[context], cross_check=False)
    cache = size.rows[0]["cache_bytes"]
    return {"weights": size.model_bytes, "cache": cache or 0, "total": size.model_bytes + (cache or 0),
            "cache_known": cache is not None}


def roofline(model, batch: int, prompt_len: int, gen_len: int, engine: str, device: torch.device,
             ttft_s: float | None = None, tpot_s: float | None = None,
             peak_bw: float | None = None, peak_flops: float | None = None) -> dict[str, Any]:
    """Floors, achieved bandwidth/FLOP rate, MBU and MFU for one configuration (None where unknown)."""
    peak = lookup_peak(device_name(device)) if device.type == "cuda" else None
    bw = peak_bw or (peak.bandwidth if peak else None)
    fl = peak_flops or (peak.flops if peak else None)
    source = "override" if (peak_bw or peak_flops) else (f"{peak.name} ({peak.source})" if peak else None)
    w = weight_bytes(model)
    # A static cache's attention spans every slot; a dynamic one the live context (its mean over the decode).
    context = prompt_len + gen_len if engine.startswith("cuda-graph") else prompt_len + gen_len // 2
    step = decode_step_bytes(model, batch, context)
    prompt_cache = decode_step_bytes(model, batch, prompt_len)["cache"]
    step_bytes = step["total"]
    pf = prefill_flops(model, batch, prompt_len)
    df = decode_flops(model, batch, context)
    out: dict[str, Any] = {
        "peak_source": source, "peak_bw_bytes_per_s": bw, "peak_flops_per_s": fl,
        "weights_read_bytes": step["weights"], "kv_read_bytes": step["cache"], "cache_known": step["cache_known"],
        "decode_step_bytes": step_bytes, "decode_context_tokens": context, "tied_embeddings": w["tied"],
        "prefill_flops": pf, "decode_step_flops": df,
        "tpot_floor_ms": None, "ttft_floor_ms": None, "ttlt_floor_ms": None,
        "achieved_bw_bytes_per_s": None, "mbu": None, "achieved_prefill_flops_per_s": None, "mfu": None,
        "decode_mfu": None,
    }
    if bw:
        out["tpot_floor_ms"] = step_bytes / bw * 1e3
    if fl:
        compute = pf / fl
        memory = (step["weights"] + prompt_cache) / bw if bw else 0.0
        out["ttft_floor_ms"] = max(compute, memory) * 1e3
    if out["tpot_floor_ms"] is not None and out["ttft_floor_ms"] is not None:
        out["ttlt_floor_ms"] = out["ttft_floor_ms"] + (gen_len - 1) * out["tpot_floor_ms"]
    if tpot_s:
        out["achieved_bw_bytes_per_s"] = step_bytes / tpot_s
        out["mbu"] = out["achieved_bw_bytes_per_s"] / bw if bw else None
        out["decode_mfu"] = df / tpot_s / fl if fl else None
    if ttft_s:
        out["achieved_prefill_flops_per_s"] = pf / ttft_s
        out["mfu"] = pf / ttft_s / fl if fl else None
    return out
