"""How big a model and its cache are: parameters, buffers, KV cache and SSM state.

* Weights are counted by the bytes of the storage that really holds them (deduplicated, so tied
  weights and views count once): int8, packed 4-bit in uint8, fp8, quantized-layer buffers, torch
  quantized tensors and wrapper tensor subclasses all count what they occupy, not a nominal dtype.
* The cache is analytic, from the config, for any (batch, seq_len) grid (``cache_shapes``):
  grouped/multi-query attention, explicit ``head_dim``, sliding-window layers, Mamba-1/Mamba-2
  state, hybrids, GPT-2. It follows what transformers' own ``DynamicCache`` holds during generation.
* Cross-check: on a materialized model, where cheap enough, one real prefill (plus one decode step,
  see ``measure_cache``) builds the cache and its storage bytes are summed and compared.
* A folder, hub id or config is sized on the meta device: no weights are read or allocated.

Plain API: ``measure_size(model_or_folder_or_config, batch=[1], seq_len=[1024, 2048]) -> SizeReport``
(``size_report``). The names of ``cache_shapes`` and ``size_report`` stay importable from here.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# the analytic cache and the report have their own modules; their names stay importable from here
from .cache_shapes import MAMBA1_TYPES, MAMBA2_TYPES, CacheLayout, LayerCache, cache_layout  # noqa: F401
from ..core import defaults
from ..core.errors import one_line
from ..loading import ModelLoadError, load_config
from .report import SizeReport
from .weights import SizeError, WeightBytes, count_weights, dtype_name, parse_dtype, tensor_storages  # noqa: F401


# ----------------------------------------------------------------------------------------------
# the measured cache: one real prefill (+ one decode step) on the model itself

_SSM_NAMES = ("conv", "ssm", "recurrent", "state")


def cache_storage_bytes(cache) -> tuple[list[tuple[int, int]], set[str]]:
    """(kv bytes, ssm+conv bytes) per cache layer, each storage counted once, and the dtypes seen."""
    import torch

    seen: set = set()
    dtypes: set[str] = set()

    def walk(obj, ssm: bool, acc: list[int], depth: int = 0) -> None:
        if depth > 6:
            return
        if isinstance(obj, torch.Tensor):
            if obj.numel() <= 1:  # bookkeeping scalars (lengths, window sizes)
                return
            for key, nbytes, dt in tensor_storages(obj):
                if key not in seen:
                    seen.add(key)
                    acc[1 if ssm else 0] += nbytes
                    dtypes.add(dt)
        elif isinstance(obj, dict):
            for key, value in obj.items():
                walk(value, ssm or any(s in str(key).lower() for s in _SSM_NAMES), acc, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value, ssm, acc, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)):
            walk(vars(obj), ssm, acc, depth + 1)

    layers = getattr(cache, "layers", None)
    per_layer = []
    for part in (layers if isinstance(layers, list) else [cache]):
        acc = [0, 0]
        walk(part, False, acc)
        per_layer.append((acc[0], acc[1]))
    return per_layer, dtypes


def _cache_kwarg(model) -> str:
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values", "cache_params"):
        if name in params:
            return name
    return "past_key_values"


def _output_cache(out):
    for name in ("cache", "past_key_values", "cache_params"):
        if isinstance(out, dict) and out.get(name) is not None:
            return out[name]
    return getattr(out, "past_key_values", None)


def measure_cache(model, batch: int, seq_len: int) -> tuple[list[tuple[int, int]], set[str]]:
    """The cache a real generation holds at context ``seq_len``: per-layer (kv, ssm) bytes, dtypes.

    A prefill of ``seq_len - 1`` tokens then one decode step: right after a bare prefill,
    transformers' sliding-window layers still hold every prompt position (a view on the concatenated
    tensor) until the first decode step trims them, so the decode step shows the steady state.
    The model's training flags, gradients and the global RNG are left as they were.
    """
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 2
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, min(vocab, 1000), (batch, seq_len), generator=gen).to(device)
    # logits for the last position only: a big grid row would otherwise hold batch x seq_len x vocab logits
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            first = seq_len - 1 if seq_len > 1 else seq_len
            out = model(input_ids=ids[:, :first], use_cache=True, **extra)
            cache = _output_cache(out)
            del out
            if cache is None:
                raise RuntimeError("the forward returned no cache")
            if first < seq_len:
                out = model(input_ids=ids[:, first:], use_cache=True, **extra, **{_cache_kwarg(model): cache})
                cache = _output_cache(out) or cache
                del out
            result = cache_storage_bytes(cache)
            del cache
            return result
    finally:
        for module, training in flags:
            module.training = training


# ----------------------------------------------------------------------------------------------
# loading configs and meta models


_SAFETENSORS_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                      "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}


def checkpoint_bytes(folder: str) -> dict[str, Any] | None:
    """Bytes of the tensors in a folder's ``*.safetensors`` files, by dtype, from their headers only."""
    import glob
    import json
    import struct

    files = sorted(glob.glob(os.path.join(os.path.expanduser(folder), "*.safetensors")))
    if not files:
        return None
    by_dtype: dict[str, int] = defaultdict(int)
    for path in files:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            by_dtype[info["dtype"]] += end - start
    return {"files": len(files), "bytes": sum(by_dtype.values()), "dtypes": dict(by_dtype)}


def meta_model(config, trust_remote_code: bool = False):
    """The model a config describes, on the meta device (no memory, no weights read)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    dtype = getattr(config, "dtype", None) if hasattr(config, "dtype") else getattr(config, "torch_dtype", None)
    dtype = dtype or torch.float32
    dtype = parse_dtype(dtype) if not isinstance(dtype, torch.dtype) else dtype
    with torch.device("meta"):
        for auto in (AutoModelForCausalLM, AutoModel):
            try:
                return auto.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
            except ValueError:
                continue
    raise SizeError(f"transformers can't build a model of type {getattr(config, 'model_type', '?')!r} "
                    "from this config")


# ----------------------------------------------------------------------------------------------
# measure_size

# A measured cross-check runs for a grid row only when it is this cheap (parameters x tokens, tokens).
CPU_WORK_BUDGET, CPU_MAX_TOKENS = 2e10, 8192
GPU_WORK_BUDGET, GPU_MAX_TOKENS = 5e13, 262144
PROBE_SEQ_LEN = 16


def _as_list(name: str, values: int | Iterable[int]) -> list[int]:
    values = list(values) if isinstance(values, Iterable) and not isinstance(values, str) else [values]
    if not values:
        raise SizeError(f"{name} needs at least one value")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise SizeError(f"{name} must be positive integers, got {v!r}")
        if v <= 0:
            raise SizeError(f"{name} must be positive integers, got {v}")
    return values


def _resolve(target, trust_remote_code: bool = False) -> tuple[Any, Any, str, str]:
    """(module or None, config or None, label, source) for whatever the user passed."""
    import torch

    if isinstance(target, torch.nn.Module):
        target = getattr(target, "_orig_mod", target)  # torch.compile'd: size (and run) the original
        config = getattr(target, "config", None)
        return target, config, type(target).__name__, "module"
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        try:
            config = load_config(text, trust_remote_code)
        except ModelLoadError as exc:
            raise SizeError(str(exc)) from None
        model = meta_model(config, trust_remote_code)
        kind = "preset, random shape" if text.startswith("random:") else (
            "folder" if os.path.isdir(os.path.expanduser(text)) else "hub id")
        return model, config, f"{type(model).__name__} from {text}", f"{kind}, sized on the meta device"
    if hasattr(target, "to_dict") and hasattr(target, "model_type"):
        model = meta_model(target, trust_remote_code)
        return model, target, f"{type(model).__name__} from config", "config, sized on the meta device"
    raise SizeError(f"can't size a {type(target).__name__}: pass a torch.nn.Module, a config, "
                    "or a folder / hub id")


def _model_dtype(model, config):
    import torch

    for p in model.parameters():
        if p.is_floating_point() and p.dtype.itemsize >= 2:
            return p.dtype
    dtype = getattr(config, "dtype", None) if config is not None else None
    return parse_dtype(dtype) if dtype is not None and not isinstance(dtype, torch.dtype) else (dtype or torch.float32)


def _model_device(model):
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def gpu_memory(device=None) -> dict[str, Any] | None:
    """Free and total bytes of the (current or given) CUDA device, or None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = device.index if device is not None and getattr(device, "type", "") == "cuda" else None
    index = torch.cuda.current_device() if index is None else index
    try:
        free, total = torch.cuda.mem_get_info(index)
    except Exception:  # noqa: BLE001 - a device that can't say its free memory: sizes stay, fit is unknown
        return None
    try:
        name = torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 - a name is a nicety
        name = f"cuda:{index}"
    return {"index": index, "name": name, "free_bytes": int(free), "total_bytes": int(total)}


def measure_size(model_or_folder_or_config, batch: int | Iterable[int] = defaults.SIZE_BATCH,
                 seq_len: int | Iterable[int] = defaults.SIZE_SEQ_LEN,
                 cache_dtype: Any = None, binary: bool = False, cross_check: bool = True,
                 *, label: str | None = None, trust_remote_code: bool = False) -> SizeReport:
    """Size a model and its cache for every (batch, seq_len).

    ``model_or_folder_or_config``: a ``torch.nn.Module`` (sized as it is, cross-checked with a real
    prefill where cheap), a transformers config, a local folder with config.json, ``random:PRESET``
    or a hub id (these three on the meta device). ``cache_dtype`` overrides the KV/conv cache dtype
    (default: the model's). ``binary`` shows GiB instead of GB; ``label`` names the model in the
    report. Custom model code (a config's ``auto_map``) runs only with ``trust_remote_code=True``.
    Raises ``SizeError`` on bad input.
    """
    import torch

    batches = _as_list("batch", batch)
    lengths = _as_list("seq_len", seq_len)
    override = parse_dtype(cache_dtype)
    settings = {"target": model_or_folder_or_config if isinstance(model_or_folder_or_config, (str, os.PathLike))
                else type(model_or_folder_or_config).__name__, "batch": batches, "seq_len": lengths,
                "cache_dtype": None if override is None else dtype_name(override), "binary": binary,
                "cross_check": cross_check, "label": label}
    user_label = label
    model, config, default_label, source = _resolve(model_or_folder_or_config, trust_remote_code)
    label = f"{label} ({type(model).__name__})" if label else default_label
    weights = count_weights(model)
    dtype = _model_dtype(model, config)
    kv_dtype, ssm_dtype = override or dtype, torch.float32
    layout = cache_layout(config) if config is not None else CacheLayout(label, [], False, [
        f"{type(model).__name__} has no transformers config: no cache figures"])
    device = _model_device(model)
    on_gpu = device.type == "cuda"
    gpu = gpu_memory(device if on_gpu else None)
    notes = list(layout.notes)
    check = _CrossCheck.make(model, config, weights, layout, override, dtype, cross_check, on_gpu, notes)

    rows = []
    for b in batches:
        for length in lengths:
            row = _grid_row(b, length, layout, weights, kv_dtype, ssm_dtype, check, notes)
            if gpu is not None:
                need = row["cache_bytes"] if on_gpu else row["total_bytes"]
                row["fits_gpu"] = None if need is None else need <= gpu["free_bytes"]
            rows.append(row)
    if check is not None and not any("measured_cache_bytes" in r for r in rows) and layout.known:
        notes.append(_probe(model, layout, kv_dtype, ssm_dtype))
    notes += _closing_notes(rows, lengths, layout, weights, config, source, override, dtype, gpu, on_gpu)
    from ..core.environment import capture_environment

    report = SizeReport(
        model=label, source=source, weights=weights, rows=rows, model_dtype=dtype_name(dtype),
        cache_dtype=dtype_name(kv_dtype), ssm_state_dtype=dtype_name(ssm_dtype), layer_counts=layout.counts(),
        binary=binary, notes=notes, gpu=gpu, model_on_gpu=on_gpu, checkpoint=_checkpoint_of(model_or_folder_or_config),
        label=user_label or label,
    )
    return report.stamp(settings=settings, model=model, environment=capture_environment(device))


def _checkpoint_of(target) -> dict[str, Any] | None:
    if isinstance(target, (str, os.PathLike)) and os.path.isdir(os.path.expanduser(os.fspath(target))):
        try:
            return checkpoint_bytes(os.fspath(target))
        except (OSError, ValueError, KeyError):  # a damaged header: the size from the config stands
            return None
    return None


@dataclass
class _CrossCheck:
    """Runs the measured cross-check for the grid rows cheap enough to run on this model's device."""

    model: Any
    n_params: int
    budget: float
    max_tokens: int

    @classmethod
    def make(cls, model, config, weights, layout, override, dtype, enabled, on_gpu, notes) -> "_CrossCheck | None":
        if not enabled or config is None or _model_device(model).type == "meta":
            return None  # switched off, nothing to build a cache from, or nothing to run (sized from a config)
        if override is not None and override != dtype:
            notes.append("no cross-check: the requested cache dtype differs from the one the model builds")
            return None
        budget, max_tokens = (GPU_WORK_BUDGET, GPU_MAX_TOKENS) if on_gpu else (CPU_WORK_BUDGET, CPU_MAX_TOKENS)
        if not layout.known:
            budget *= 10  # the measured figure is the only one: worth a longer run
        return cls(model, max(weights.param_count, 1), budget, max_tokens)

    def cheap(self, batch: int, seq_len: int) -> bool:
        return batch * seq_len <= self.max_tokens and self.n_params * batch * seq_len <= self.budget


def _grid_row(b, length, layout, weights, kv_dtype, ssm_dtype, check, notes) -> dict[str, Any]:
    per_layer = layout.layer_bytes(b, length, kv_dtype.itemsize, ssm_dtype.itemsize) if layout.known else None
    kv = sum(x[0] for x in per_layer) if per_layer is not None else None
    ssm = sum(x[1] for x in per_layer) if per_layer is not None else None
    extra: dict[str, Any] = {}
    measured = _try_measure(check.model, b, length, notes) if check is not None and check.cheap(b, length) else None
    if measured is not None:
        m_layers, m_dtypes = measured
        m_kv, m_ssm = sum(x[0] for x in m_layers), sum(x[1] for x in m_layers)
        extra["measured_cache_bytes"] = m_kv + m_ssm
        if per_layer is None:
            kv, ssm = m_kv, m_ssm
            extra["cache_source"] = "measured"
        elif (m_kv, m_ssm) != (kv, ssm):
            notes.append(_why_different(b, length, per_layer, m_layers, layout, m_dtypes, kv_dtype))
    return {
        "batch": b, "seq_len": length, "kv_cache_bytes": kv, "ssm_cache_bytes": ssm,
        "cache_bytes": None if kv is None else kv + ssm,
        "total_bytes": None if kv is None else weights.params_bytes + weights.buffers_bytes + kv + ssm,
        **extra,
    }


def _closing_notes(rows, lengths, layout, weights, config, source, override, dtype, gpu, on_gpu) -> list[str]:
    notes = []
    if config is not None and any(r["kv_cache_bytes"] is None for r in rows):
        notes.append("rows without cache figures: the architecture is unknown to the analytic path and "
                     "too big (or not runnable) to measure")
    max_pos = getattr(config.get_text_config(decoder=True), "max_position_embeddings", None) if config else None
    if max_pos and max(lengths) > max_pos:
        notes.append(f"seq_len {max(lengths)} exceeds the model's max_position_embeddings ({max_pos})")
    if override is not None and override != dtype:
        notes.append(f"cache dtype {dtype_name(override)} requested (the model computes in {dtype_name(dtype)})")
    if any(layer.ssm_elems for layer in layout.layers):
        notes.append("SSM recurrent states are float32: transformers' Mamba scan computes and keeps them in float32")
    if weights.packed_modules:
        notes.append(f"{weights.packed_modules} torch quantized layer(s): weights counted as int8 tensors + scales")
    if config is not None and getattr(config, "quantization_config", None) and source != "module":
        notes.append("the config declares a quantization_config: parameters are sized as the unquantized layout "
                     "(the checkpoint line, when the folder has safetensors files, gives the stored bytes)")
    if gpu is not None and on_gpu:
        notes.append("fits GPU compares the cache alone with free memory: the model already occupies its share")
    return notes


def _try_measure(model, batch: int, seq_len: int, notes: list[str]):
    try:
        return measure_cache(model, batch, seq_len)
    except Exception as exc:  # noqa: BLE001 - out of memory, an unusual forward: the analytic figure stands
        note = f"measured cross-check failed at batch {batch}, seq_len {seq_len}: {one_line(exc)}"
        if note not in notes:
            notes.append(note)
        _free_cuda()
        return None


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _probe(model, layout: CacheLayout, kv_dtype, ssm_dtype) -> str:
    """When every grid row is too costly to run, check the formula once on a short sequence."""
    windows = [layer.window for layer in layout.layers if layer.window]
    length = PROBE_SEQ_LEN if not windows or min(windows) + 2 > 256 else max(PROBE_SEQ_LEN, min(windows) + 2)
    measured = _try_measure(model, 1, length, [])
    if measured is None:
        return f"cross-check skipped: a probe prefill (batch 1, seq_len {length}) failed"
    analytic = layout.layer_bytes(1, length, kv_dtype.itemsize, ssm_dtype.itemsize)
    a, m = sum(map(sum, analytic)), sum(map(sum, measured[0]))
    verdict = "equal" if a == m else "DIFFERENT"
    return (f"grid too costly to run here; probe prefill at batch 1, seq_len {length}: analytic {a:,} B, "
            f"measured {m:,} B ({verdict})")


def _why_different(batch, seq_len, analytic, measured, layout: CacheLayout, m_dtypes, kv_dtype) -> str:
    head = f"batch {batch}, seq_len {seq_len}: measured cache {sum(map(sum, measured)):,} B != analytic {sum(map(sum, analytic)):,} B"
    other = sorted(d for d in m_dtypes if d not in (dtype_name(kv_dtype), "float32"))
    if other:
        return f"{head}; the real cache holds {', '.join(other)} tensors, not {dtype_name(kv_dtype)}"
    if len(analytic) != len(measured):
        return f"{head}; the real cache has {len(measured)} layers, the config describes {len(analytic)}"
    for i, (a, m) in enumerate(zip(analytic, measured)):
        if a != m:
            kind = layout.layers[i].kind
            return (f"{head}; first difference at layer {i} ({kind}): measured kv {m[0]:,} B + state {m[1]:,} B, "
                    f"analytic kv {a[0]:,} B + state {a[1]:,} B")
    return head  # pragma: no cover

