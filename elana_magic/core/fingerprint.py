"""A model's fingerprint: what it is and how it is stored, plus a short hash of its module tree.

The hash covers every module's path and class and every parameter's and buffer's name, shape and
dtype, so an in-place edit (a dtype change, dropped layers, a swapped module) changes it. The values
enter a second, cheap checksum (``weights``): per tensor, the sum and sum of squares of a strided
sample of at most ``SAMPLE`` values, computed where the tensor lives (nothing copied to the CPU but
the sums). Fine-tuned copies of one shape share ``hash`` and differ in ``weights``; an edit of a few
values between the sampled ones can go unseen.
"""

from __future__ import annotations

import hashlib
from typing import Any

SAMPLE = 4096  # values per tensor that enter the weight checksum


def module_tree_hash(model) -> str:
    """12 hex digits of SHA-256 over module paths/classes and tensor names, shapes and dtypes."""
    h = hashlib.sha256()
    for name, module in model.named_modules():
        h.update(f"m {name} {type(module).__name__}\n".encode())
    for kind, tensors in (("p", model.named_parameters(remove_duplicate=False)),
                          ("b", model.named_buffers(remove_duplicate=False))):
        for name, t in tensors:
            h.update(f"{kind} {name} {tuple(t.shape)} {t.dtype}\n".encode())
    return h.hexdigest()[:12]


def weight_checksum(model) -> str | None:
    """12 hex digits over every parameter's and buffer's sampled sums (10 significant digits, so the
    same weights give the same checksum on a CPU and a GPU); None when no tensor has values."""
    import torch

    sums = []
    with torch.no_grad():
        for tensors in (model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)):
            for _, t in tensors:
                if t.is_meta or t.numel() == 0 or t.is_complex():
                    continue
                try:
                    flat = t.detach().reshape(-1)
                    sample = flat[::max(1, flat.numel() // SAMPLE)].to(torch.float64)
                    sums.append(torch.stack([sample.sum(), (sample * sample).sum()]).cpu())
                except (RuntimeError, TypeError):  # a packed or exotic tensor: left out
                    continue
    if not sums:
        return None
    values = torch.cat(sums).tolist()
    return hashlib.sha256(" ".join(f"{v:.10g}" for v in values).encode()).hexdigest()[:12]


def sameness(fingerprints: list[dict[str, Any] | None]) -> str | None:
    """What equal module-tree hashes mean: the same model, or the same structure with other weights."""
    if not fingerprints or any(not fp for fp in fingerprints):
        return None
    if len({fp.get("hash") for fp in fingerprints}) != 1:
        return None
    weights = {fp.get("weights") for fp in fingerprints}
    if None in weights:
        return "the same structure (equal module trees; weights not checksummed in every report)"
    if len(weights) == 1:
        return "the same model (equal fingerprints: structure and weight checksum)"
    return "the same structure, different weights (equal module trees, weight checksums differ)"


def _quantization(model, config, packed_modules: int) -> str | None:
    qc = getattr(config, "quantization_config", None) if config is not None else None
    if qc is not None:
        method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
        return str(getattr(method, "value", method) or type(qc).__name__)
    if packed_modules:
        return f"torch.ao ({packed_modules} quantized layers)"
    return None


def model_fingerprint(model) -> dict[str, Any] | None:
    """``{class, param_count, storage_bytes, bytes_by_dtype, quantization, attn_implementation, hash}``
    of a ``torch.nn.Module`` (None for anything else)."""
    import torch

    from ..size.weights import count_weights  # the same storage accounting as %elana_size

    if not isinstance(model, torch.nn.Module):
        return None
    model = getattr(model, "_orig_mod", model)
    weights = count_weights(model)
    config = getattr(model, "config", None)
    return {
        "class": type(model).__name__,
        "param_count": weights.param_count,
        "storage_bytes": weights.params_bytes + weights.buffers_bytes,
        "bytes_by_dtype": {d: v["params_bytes"] + v["buffers_bytes"] for d, v in sorted(weights.dtypes.items())},
        "quantization": _quantization(model, config, weights.packed_modules),
        "attn_implementation": getattr(config, "_attn_implementation", None) if config is not None else None,
        "layers": getattr(_text_config(config), "num_hidden_layers", None),
        "hash": module_tree_hash(model),
        "weights": weight_checksum(model),
    }


def _text_config(config):
    if config is not None and hasattr(config, "get_text_config"):
        return config.get_text_config(decoder=True)
    return config


def short_fingerprint(fp: dict[str, Any] | None) -> str:
    """'LlamaForCausalLM 135M params #1a2b3c4d5e6f' (or '-')."""
    if not fp:
        return "-"
    n = fp.get("param_count") or 0
    count = f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n:,}"
    return f"{fp.get('class')} {count} params #{fp.get('hash')}"
