"""Weights by storage bytes: parameters, buffers and packed quantized weights, each storage counted once; dtypes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ElanaError


class SizeError(ElanaError, ValueError):
    """A bad input to ``measure_size``; the message is one line saying what to do."""



# ----------------------------------------------------------------------------------------------
# dtypes

_DTYPE_ALIASES = {
    "fp32": "float32", "float": "float32", "f32": "float32",
    "fp16": "float16", "half": "float16", "f16": "float16",
    "bf16": "bfloat16",
    "fp8": "float8_e4m3fn", "float8": "float8_e4m3fn", "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2",
    "fp64": "float64", "double": "float64",
}


def parse_dtype(name: Any):
    """``'bf16'``, ``'bfloat16'``, ``'torch.float16'`` or a torch.dtype -> torch.dtype."""
    import torch

    if name is None or isinstance(name, torch.dtype):
        return name
    key = str(name).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    dtype = getattr(torch, key, None)
    if not isinstance(dtype, torch.dtype):
        raise SizeError(f"unknown dtype {name!r}: use e.g. float32, bfloat16, float16, float8_e4m3fn, int8")
    return dtype


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------------------------
# weights: storage bytes


def tensor_storages(t) -> Iterator[tuple[Any, int, str]]:
    """(dedup key, bytes, dtype name) for each piece of memory behind a tensor.

    Wrapper subclasses (torchao and friends) are opened with ``__tensor_flatten__``; torch quantized
    tensors add their per-channel scales and zero points; meta tensors count numel * itemsize.
    """
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if is_traceable_wrapper_subclass(t):
        names, _ = t.__tensor_flatten__()
        for name in names:
            inner = getattr(t, name)
            if inner is not None:
                yield from tensor_storages(inner)
        return
    if t.device.type == "meta":
        yield ("meta", id(t)), t.numel() * t.element_size(), dtype_name(t.dtype)
        return
    storage = t.untyped_storage()
    yield (t.device, storage.data_ptr(), storage.nbytes()), storage.nbytes(), dtype_name(t.dtype)
    if getattr(t, "is_quantized", False) and t.qscheme() in _per_channel_qschemes():
        for extra in (t.q_per_channel_scales(), t.q_per_channel_zero_points()):
            yield from tensor_storages(extra)


def _per_channel_qschemes():
    import torch

    return (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)


@dataclass
class WeightBytes:
    """Deduplicated storage bytes of a module's parameters and buffers, by dtype."""

    params_bytes: int = 0
    buffers_bytes: int = 0
    param_count: int = 0
    trainable_count: int = 0
    buffer_count: int = 0
    tied: int = 0
    dtypes: dict[str, dict[str, int]] = field(default_factory=dict)
    packed_modules: int = 0

    def add(self, kind: str, nbytes: int, dtype: str, numel: int) -> None:
        entry = self.dtypes.setdefault(dtype, {"params": 0, "params_bytes": 0, "buffers": 0, "buffers_bytes": 0})
        entry[kind] += numel
        entry[kind + "_bytes"] += nbytes
        if kind == "params":
            self.params_bytes += nbytes
        else:
            self.buffers_bytes += nbytes


def count_weights(model) -> WeightBytes:
    """Parameters (trainable and frozen), buffers and packed quantized weights, each storage once."""
    import torch

    out = WeightBytes()
    seen: set = set()
    alive: list = []  # keeps unpacked tensors alive so that their addresses can't be reused mid-count

    def account(kind: str, tensor) -> None:
        alive.append(tensor)
        new_bytes, numel, dtype = 0, 0, None
        for key, nbytes, dt in tensor_storages(tensor):
            dtype = dtype or dt
            if key in seen:
                continue
            seen.add(key)
            new_bytes += nbytes
        if new_bytes == 0 and dtype is not None and tensor.numel():
            out.tied += 1  # shares storage with a tensor already counted
            return
        numel = tensor.numel()
        if kind == "params":
            out.param_count += numel
            if tensor.requires_grad:
                out.trainable_count += numel
        else:
            out.buffer_count += numel
        out.add(kind, new_bytes, dtype or dtype_name(tensor.dtype), numel)

    for _, p in model.named_parameters(remove_duplicate=False):
        account("params", p)
    for _, b in model.named_buffers(remove_duplicate=False):
        account("buffers", b)
    # torch.ao quantized layers keep int8 weight and bias in packed params: neither parameter nor buffer
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        unpack = getattr(module, "_weight_bias", None)
        if packed is None or isinstance(packed, torch.nn.Module) or not callable(unpack):
            continue
        try:
            tensors = unpack()
        except Exception:  # noqa: BLE001 - an engine that can't unpack: nothing to count
            continue
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                account("params", tensor)
        out.packed_modules += 1
    return out
