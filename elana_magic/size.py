"""How big a model and its cache are: parameters, buffers, KV cache and SSM state.

* Weights are counted by the bytes of the storage that really holds them (deduplicated, so tied
  weights and views count once): int8, packed 4-bit in uint8, fp8, quantized-layer buffers, torch
  quantized tensors and wrapper tensor subclasses all count what they occupy, not a nominal dtype.
* The cache is analytic, from the config, for any (batch, seq_len) grid: grouped/multi-query
  attention, explicit ``head_dim``, sliding-window layers, Mamba-1/Mamba-2 state, hybrids, GPT-2.
  It follows what transformers' own ``DynamicCache`` holds during generation.
* Cross-check: on a materialized model, where cheap enough, one real prefill (plus one decode step,
  see ``measure_cache``) builds the cache and its storage bytes are summed and compared.
* A folder, hub id or config is sized on the meta device: no weights are read or allocated.

Plain API: ``measure_size(model_or_folder_or_config, batch=[1], seq_len=[1024]) -> SizeReport``.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .report import Report, html_table, text_table
from .units import format_bytes


class SizeError(ValueError):
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
        except Exception:  # an engine that can't unpack: nothing to count
            continue
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                account("params", tensor)
        out.packed_modules += 1
    return out


# ----------------------------------------------------------------------------------------------
# the analytic cache layout

MAMBA1_TYPES = {"mamba", "falcon_mamba", "jamba"}
MAMBA2_TYPES = {"mamba2", "bamba", "falcon_h1", "nemotron_h", "granitemoehybrid", "zamba2"}
_ATTENTION = {"full_attention": None, "sliding_attention": "window", "chunked_attention": "window",
              "hybrid": None, "hybrid_sliding": "window"}
_SSM = {"linear_attention", "conv", "hybrid", "hybrid_sliding"}


@dataclass
class LayerCache:
    """What one layer caches, per sequence: KV elements per position and fixed SSM/conv elements."""

    kind: str
    kv_per_position: int = 0  # n_kv_heads * (k_head_dim + v_head_dim)
    window: int | None = None  # a sliding layer keeps at most this many positions
    conv_elems: int = 0  # conv state, in the cache dtype
    ssm_elems: int = 0  # recurrent state, in float32 (see ssm_state_dtype)

    def kv_positions(self, seq_len: int) -> int:
        return min(seq_len, self.window) if self.window else seq_len


@dataclass
class CacheLayout:
    arch: str
    layers: list[LayerCache]
    known: bool
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for layer in self.layers:
            counts[layer.kind] += 1
        return dict(counts)

    def layer_bytes(self, batch: int, seq_len: int, kv_itemsize: int, ssm_itemsize: int) -> list[tuple[int, int]]:
        """(kv bytes, ssm+conv bytes) per layer."""
        return [
            (batch * layer.kv_per_position * layer.kv_positions(seq_len) * kv_itemsize,
             batch * (layer.conv_elems * kv_itemsize + layer.ssm_elems * ssm_itemsize))
            for layer in self.layers
        ]


def _first(cfg, *names, default=None):
    for name in names:
        value = getattr(cfg, name, None)
        if value is not None:
            return value
    return default


def _layer_types(cfg) -> tuple[list[str], list[int | None]]:
    """Each decoder layer's cache type and window, the way transformers' DynamicCache decides them."""
    try:
        from transformers.cache_utils import get_layer_types_and_kwargs

        types, kwargs = get_layer_types_and_kwargs(cfg)
        return list(types), [kw.get("sliding_window") for kw in kwargs]
    except (ImportError, AttributeError):  # older transformers: the same rule, by hand
        n = cfg.num_hidden_layers
        types = getattr(cfg, "layer_types", None)
        window = getattr(cfg, "sliding_window", None)
        if types is None:
            types = ["sliding_attention" if window else "full_attention"] * n
        return list(types), [window if "sliding" in t else None for t in types]


def _ssm_elems(cfg) -> tuple[int, int] | None:
    """(conv elements, recurrent elements) per sequence for one Mamba layer, or None if unknown."""
    mtype = getattr(cfg, "model_type", "")
    hidden = cfg.hidden_size
    if mtype in MAMBA2_TYPES:
        heads = _first(cfg, "mamba_n_heads", "mamba_num_heads") if mtype != "mamba2" else cfg.num_heads
        head_dim = _first(cfg, "mamba_d_head", "mamba_head_dim") if mtype != "mamba2" else cfg.head_dim
        state = _first(cfg, "mamba_d_state", "ssm_state_size", "state_size")
        groups = _first(cfg, "mamba_n_groups", "n_groups", default=1)
        kernel = _first(cfg, "mamba_d_conv", "conv_kernel", "mamba_conv_kernel")
        expand = _first(cfg, "mamba_expand", "expand", default=2)
        if None in (heads, state, kernel):
            return None
        if head_dim in (None, "auto"):
            head_dim = expand * hidden // heads
        inner = _first(cfg, "mamba_d_ssm") or heads * head_dim
        conv_dim = inner + 2 * groups * state
        return conv_dim * kernel, heads * head_dim * state
    if mtype in MAMBA1_TYPES:
        inner = _first(cfg, "intermediate_size") if mtype != "jamba" else None
        if inner is None:
            inner = _first(cfg, "mamba_expand", "expand", default=2) * hidden
        state = _first(cfg, "mamba_d_state", "state_size")
        kernel = _first(cfg, "mamba_d_conv", "conv_kernel")
        if None in (state, kernel):
            return None
        return inner * kernel, inner * state
    return None


def _attention_dims(cfg) -> int:
    """n_kv_heads * (k_head_dim + v_head_dim) for one attention layer."""
    heads = cfg.num_attention_heads
    kv_heads = _first(cfg, "num_key_value_heads", default=heads)
    if getattr(cfg, "multi_query", False):  # GPT-BigCode / Falcon style
        kv_heads = 1
    if getattr(cfg, "kv_lora_rank", None) and getattr(cfg, "qk_rope_head_dim", None):
        # MLA (DeepSeek-V2/3): transformers 5.x caches the compressed latent plus the shared rope key
        return cfg.kv_lora_rank + cfg.qk_rope_head_dim
    head_dim = _first(cfg, "head_dim") or cfg.hidden_size // heads
    return kv_heads * 2 * head_dim


def cache_layout(config) -> CacheLayout:
    """The per-layer cache layout of a (decoder) config, analytic; ``known`` False when a part isn't."""
    cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    arch = getattr(cfg, "model_type", type(cfg).__name__)
    notes: list[str] = []
    try:
        types, windows = _layer_types(cfg)
    except Exception as exc:
        return CacheLayout(arch, [], False, [f"cache layout of {arch!r} unknown ({_one_line(exc)})"])
    layers: list[LayerCache] = []
    unknown: set[str] = set()
    kv_dims = ssm = None
    for kind, window in zip(types, windows):
        layer = LayerCache(kind)
        if kind == "dummy":
            layers.append(layer)
            continue
        if kind not in _ATTENTION and kind not in _SSM:
            unknown.add(kind)
        if kind in _ATTENTION:
            kv_dims = kv_dims if kv_dims is not None else _attention_dims(cfg)
            layer.kv_per_position = kv_dims
            if _ATTENTION[kind] == "window":
                layer.window = window
        if kind in _SSM:
            ssm = ssm if ssm is not None else _ssm_elems(cfg)
            if ssm is None:
                unknown.add(f"{kind} ({arch})")
            else:
                layer.conv_elems, layer.ssm_elems = ssm
        layers.append(layer)
    if unknown:
        notes.append(f"the analytic cache doesn't know layer type(s) {', '.join(sorted(unknown))} of {arch!r}: "
                     "cache figures come from a measured prefill where possible")
    return CacheLayout(arch, layers, not unknown, notes)


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


def _looks_like_path(target: str) -> bool:
    return target.startswith(("/", ".", "~")) or target.count("/") > 1 or "\\" in target or os.path.exists(target)


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


def load_config(target: str):
    """A transformers config from a local folder (config.json), a ``random:PRESET`` or a hub id."""
    from transformers import AutoConfig

    target = os.path.expanduser(target)
    if target.startswith("random:"):
        from .models import PRESETS, preset_config

        name = target.split(":", 1)[1]
        if name not in PRESETS:
            raise SizeError(f"unknown preset {name!r}: use one of {', '.join(sorted(PRESETS))}")
        return preset_config(name)
    if os.path.isdir(target):
        if not os.path.isfile(os.path.join(target, "config.json")):
            raise SizeError(f"{target!r} has no config.json: pass the folder that holds the model's config.json")
        return _auto_config(AutoConfig, target)
    if _looks_like_path(target) or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", target):
        raise SizeError(f"no folder {target!r}: check the path (a hub id looks like 'org/name')")
    return _hub_config(AutoConfig, target)


def _auto_config(auto, target: str, **kwargs):
    try:
        return auto.from_pretrained(target, **kwargs)
    except ValueError as exc:  # unrecognized model_type and friends
        raise SizeError(f"transformers can't read the config in {target!r}: {_one_line(exc)}") from None


def _hub_config(auto, repo_id: str):
    try:  # the local hub cache first: works offline
        return auto.from_pretrained(repo_id, local_files_only=True)
    except (OSError, ValueError):
        pass
    if _hub_offline():
        raise SizeError(f"hub id {repo_id!r} is not in the local cache and the Hub is offline "
                        "(HF_HUB_OFFLINE): pass a local folder with config.json")
    endpoint = _hub_endpoint()
    if not _reachable(endpoint):
        raise SizeError(f"can't reach {endpoint} to fetch {repo_id!r} (no network): "
                        "pass a local folder with config.json")
    try:
        return auto.from_pretrained(repo_id)
    except Exception as exc:
        raise SizeError(f"could not get the config of {repo_id!r} from the Hub: {_one_line(exc)}") from None


def _hub_offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    if any(os.environ.get(v, "").lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover
        return False


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:  # pragma: no cover
        return "https://huggingface.co"


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """A quick TCP connect, so that a machine without network answers at once instead of retrying."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def meta_model(config):
    """The model a config describes, on the meta device (no memory, no weights read)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    dtype = getattr(config, "dtype", None) if hasattr(config, "dtype") else getattr(config, "torch_dtype", None)
    dtype = dtype or torch.float32
    dtype = parse_dtype(dtype) if not isinstance(dtype, torch.dtype) else dtype
    with torch.device("meta"):
        for auto in (AutoModelForCausalLM, AutoModel):
            try:
                return auto.from_config(config, dtype=dtype)
            except ValueError:
                continue
    raise SizeError(f"transformers can't build a model of type {getattr(config, 'model_type', '?')!r} "
                    "from this config")


# ----------------------------------------------------------------------------------------------
# the report


@dataclass(repr=False)
class SizeReport(Report):
    """Parameters, buffers and the cache for a (batch, seq_len) grid. All sizes in bytes."""

    model: str
    source: str
    weights: WeightBytes
    rows: list[dict[str, Any]]
    model_dtype: str
    cache_dtype: str
    ssm_state_dtype: str
    layer_counts: dict[str, int]
    binary: bool = False
    notes: list[str] = field(default_factory=list)
    gpu: dict[str, Any] | None = None
    model_on_gpu: bool = False
    checkpoint: dict[str, Any] | None = None

    @property
    def params_bytes(self) -> int:
        return self.weights.params_bytes

    @property
    def buffers_bytes(self) -> int:
        return self.weights.buffers_bytes

    @property
    def model_bytes(self) -> int:
        return self.weights.params_bytes + self.weights.buffers_bytes

    def to_dict(self) -> dict[str, Any]:
        w = self.weights
        return {
            "model": self.model,
            "source": self.source,
            "params_bytes": w.params_bytes,
            "buffers_bytes": w.buffers_bytes,
            "model_bytes": self.model_bytes,
            "param_count": w.param_count,
            "trainable_param_count": w.trainable_count,
            "frozen_param_count": w.param_count - w.trainable_count,
            "buffer_count": w.buffer_count,
            "tied_tensors": w.tied,
            "dtypes": w.dtypes,
            "model_dtype": self.model_dtype,
            "cache_dtype": self.cache_dtype,
            "ssm_state_dtype": self.ssm_state_dtype,
            "layers": self.layer_counts,
            "rows": [dict(r) for r in self.rows],
            "gpu": self.gpu,
            "checkpoint": self.checkpoint,
            "notes": list(self.notes),
            "units": "binary (GiB = 2**30 bytes)" if self.binary else "SI (GB = 1e9 bytes)",
        }

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        head = {k: data[k] for k in ("model", "params_bytes", "buffers_bytes", "model_bytes")}
        return [{**head, **row} for row in data["rows"]]

    # views

    def _fmt(self, n) -> str:
        return format_bytes(n, binary=self.binary)

    def _summary_lines(self) -> list[str]:
        w = self.weights
        frozen = w.param_count - w.trainable_count
        lines = [
            f"{self.model}  ({self.source})",
            f"parameters {w.param_count:,} ({w.trainable_count:,} trainable, {frozen:,} frozen): "
            f"{self._fmt(w.params_bytes)}"
            + (f"; {w.tied} tied tensor(s) counted once" if w.tied else ""),
            f"buffers {w.buffer_count:,}: {self._fmt(w.buffers_bytes)}",
            f"model {self._fmt(self.model_bytes)}   cache dtype {self.cache_dtype}"
            + (f", SSM state {self.ssm_state_dtype}" if self._has_ssm() else "")
            + f"   layers: {_counts_text(self.layer_counts)}",
        ]
        if self.checkpoint:
            c = self.checkpoint
            dtypes = ", ".join(f"{d} {self._fmt(n)}" for d, n in sorted(c["dtypes"].items(), key=lambda kv: -kv[1]))
            lines.append(f"checkpoint on disk: {self._fmt(c['bytes'])} in {c['files']} safetensors file(s) ({dtypes})")
        if self.gpu:
            lines.append(f"GPU {self.gpu['name']}: {self._fmt(self.gpu['free_bytes'])} free of "
                         f"{self._fmt(self.gpu['total_bytes'])}"
                         + (" (the model is already on it)" if self.model_on_gpu else ""))
        return lines

    def _has_ssm(self) -> bool:
        return any((r.get("ssm_cache_bytes") or 0) > 0 for r in self.rows)

    def _dtype_table(self) -> tuple[list[str], list[list[Any]]]:
        header = ["dtype", "params", "param bytes", "buffers", "buffer bytes"]
        rows = [[dt, f"{d['params']:,}", self._fmt(d["params_bytes"]), f"{d['buffers']:,}", self._fmt(d["buffers_bytes"])]
                for dt, d in sorted(self.weights.dtypes.items(), key=lambda kv: -(kv[1]["params_bytes"] + kv[1]["buffers_bytes"]))]
        return header, rows

    def _grid_table(self) -> tuple[list[str], list[list[Any]]]:
        measured = any("measured_cache_bytes" in r for r in self.rows)
        fits = any("fits_gpu" in r for r in self.rows)
        header = ["batch", "seq_len", "KV cache", "SSM state", "cache", "model + cache"]
        header += ["measured cache"] if measured else []
        header += ["fits GPU"] if fits else []
        rows = []
        for r in self.rows:
            row = [r["batch"], r["seq_len"], self._fmt(r["kv_cache_bytes"]), self._fmt(r["ssm_cache_bytes"]),
                   self._fmt(r["cache_bytes"]), self._fmt(r["total_bytes"])]
            if measured:
                m = r.get("measured_cache_bytes")
                row.append("-" if m is None else ("= " if m == r["cache_bytes"] else "") + self._fmt(m))
            if fits:
                row.append({True: "yes", False: "NO", None: "-"}[r.get("fits_gpu")])
            rows.append(row)
        return header, rows

    def to_text(self) -> str:
        parts = ["\n".join(self._summary_lines()), text_table(*self._dtype_table()), text_table(*self._grid_table())]
        if self.notes:
            parts.append("\n".join(f"note: {n}" for n in self.notes))
        return "\n\n".join(parts)

    def to_html(self) -> str:
        import html

        summary = "<br>".join(html.escape(line) for line in self._summary_lines())
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<div class='elana-size'><p>{summary}</p>"
                + html_table(*self._grid_table(), caption="cache for each (batch, seq_len)")
                + html_table(*self._dtype_table(), caption="weights by dtype")
                + (f"<ul>{notes}</ul>" if notes else "") + "</div>")

    def figure(self):
        """A stacked bar chart: model, KV cache and SSM state for each grid row."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        unit = "GiB" if self.binary else "GB"
        scale = 2**30 if self.binary else 1e9
        labels = [f"B={r['batch']}\nL={r['seq_len']}" for r in self.rows]
        model = [self.model_bytes / scale] * len(self.rows)
        kv = [(r["kv_cache_bytes"] or 0) / scale for r in self.rows]
        ssm = [(r["ssm_cache_bytes"] or 0) / scale for r in self.rows]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(self.rows) + 2), 3.0))
        ax.bar(labels, model, label="model", color="#8da0cb")
        ax.bar(labels, kv, bottom=model, label="KV cache", color="#fc8d62")
        ax.bar(labels, ssm, bottom=[a + b for a, b in zip(model, kv)], label="SSM state", color="#66c2a5")
        if self.gpu:
            free = self.gpu["free_bytes"] / scale + (self.model_bytes / scale if self.model_on_gpu else 0)
            ax.axhline(free, color="k", ls="--", lw=1, label="GPU free")
        ax.set_ylabel(unit)
        ax.set_title(self.model, fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def widget(self):
        """An HTML table and the bar chart, stacked (ipywidgets); text and HTML for static renderers."""
        import base64

        import ipywidgets as widgets

        from .widgets import figure_to_widget

        image = figure_to_widget(self.figure())
        png = base64.b64encode(image.value).decode("ascii")
        view = _size_view_class()([widgets.HTML(self.to_html()), image])
        view.fallback = {"text/plain": self.to_text(), "text/html": self.to_html() + f"<img src='data:image/png;base64,{png}'/>"}
        return view


@functools.cache
def _size_view_class():
    """A VBox whose static fallback is the report (text and HTML), not ``VBox(children=...)``."""
    import ipywidgets as widgets

    class SizeView(widgets.VBox):
        fallback: dict[str, str] = {}

        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs) or {}
            return {**bundle, **self.fallback}

        def __repr__(self) -> str:
            return self.fallback.get("text/plain") or super().__repr__()

    return SizeView


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "-"


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


def _resolve(target) -> tuple[Any, Any, str, str]:
    """(module or None, config or None, label, source) for whatever the user passed."""
    import torch

    if isinstance(target, torch.nn.Module):
        target = getattr(target, "_orig_mod", target)  # torch.compile'd: size (and run) the original
        config = getattr(target, "config", None)
        return target, config, type(target).__name__, "module"
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        config = load_config(text)
        model = meta_model(config)
        kind = "preset, random shape" if text.startswith("random:") else (
            "folder" if os.path.isdir(os.path.expanduser(text)) else "hub id")
        return model, config, f"{type(model).__name__} from {text}", f"{kind}, sized on the meta device"
    if hasattr(target, "to_dict") and hasattr(target, "model_type"):
        model = meta_model(target)
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
    free, total = torch.cuda.mem_get_info(index)
    try:
        name = torch.cuda.get_device_name(index)
    except Exception:  # a name is a nicety
        name = f"cuda:{index}"
    return {"index": index, "name": name, "free_bytes": int(free), "total_bytes": int(total)}


def measure_size(model_or_folder_or_config, batch: int | Iterable[int] = (1,), seq_len: int | Iterable[int] = (1024,),
                 cache_dtype: Any = None, binary: bool = False, cross_check: bool = True,
                 *, label: str | None = None) -> SizeReport:
    """Size a model and its cache for every (batch, seq_len).

    ``model_or_folder_or_config``: a ``torch.nn.Module`` (sized as it is, cross-checked with a real
    prefill where cheap), a transformers config, a local folder with config.json, ``random:PRESET``
    or a hub id (these three on the meta device). ``cache_dtype`` overrides the KV/conv cache dtype
    (default: the model's). ``binary`` shows GiB instead of GB; ``label`` names the model in the
    report. Raises ``SizeError`` on bad input.
    """
    import torch

    batches = _as_list("batch", batch)
    lengths = _as_list("seq_len", seq_len)
    override = parse_dtype(cache_dtype)
    model, config, default_label, source = _resolve(model_or_folder_or_config)
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
    return SizeReport(
        model=label, source=source, weights=weights, rows=rows, model_dtype=dtype_name(dtype),
        cache_dtype=dtype_name(kv_dtype), ssm_state_dtype=dtype_name(ssm_dtype), layer_counts=layout.counts(),
        binary=binary, notes=notes, gpu=gpu, model_on_gpu=on_gpu, checkpoint=_checkpoint_of(model_or_folder_or_config),
    )


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
    except Exception as exc:  # out of memory, an unusual forward: the analytic figure stands
        note = f"measured cross-check failed at batch {batch}, seq_len {seq_len}: {_one_line(exc)}"
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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
