"""The analytic cache: what a config's layers cache, turned into bytes for any (batch, seq_len).

Grouped/multi-query attention, explicit ``head_dim``, sliding-window layers, Mamba-1/Mamba-2
state, hybrids, MLA (DeepSeek-V2/3) and GPT-2, following what transformers' own ``DynamicCache``
holds during generation. No torch, no model: only the config.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field

from ..core.errors import one_line

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
    except (ImportError, AttributeError):  # older transformers: the same rule, by hand
        return _layer_types_by_hand(cfg)
    types = list(types)
    if isinstance(kwargs, dict):  # transformers <= 5.17: one kwargs dict for every layer
        kwargs = [kwargs if "sliding" in t or "chunked" in t else {} for t in types]
    return types, [kw.get("sliding_window") for kw in kwargs]


def _layer_types_by_hand(cfg) -> tuple[list[str], list[int | None]]:
    n = cfg.num_hidden_layers
    types = getattr(cfg, "layer_types", None)
    window = getattr(cfg, "sliding_window", None)
    if types is None:
        types = ["sliding_attention" if window else "full_attention"] * n
    return list(types), [window if "sliding" in t else None for t in types]


def _ssm_elems(cfg) -> tuple[int, int] | None:
    """(conv elements, recurrent elements) per sequence for one Mamba layer, or None if unknown."""
    mtype = getattr(cfg, "model_type", "")
    if mtype in MAMBA2_TYPES:
        return _mamba2_elems(cfg, mtype)
    if mtype in MAMBA1_TYPES:
        return _mamba1_elems(cfg, mtype)
    return None


def _mamba2_elems(cfg, mtype: str) -> tuple[int, int] | None:
    """Mamba-2 (and its hybrids): conv over x, B and C of every group; one state per head."""
    heads = _first(cfg, "mamba_n_heads", "mamba_num_heads") if mtype != "mamba2" else cfg.num_heads
    head_dim = _first(cfg, "mamba_d_head", "mamba_head_dim") if mtype != "mamba2" else cfg.head_dim
    state = _first(cfg, "mamba_d_state", "ssm_state_size", "state_size")
    groups = _first(cfg, "mamba_n_groups", "n_groups", default=1)
    kernel = _first(cfg, "mamba_d_conv", "conv_kernel", "mamba_conv_kernel")
    expand = _first(cfg, "mamba_expand", "expand", default=2)
    if None in (heads, state, kernel):
        return None
    if head_dim in (None, "auto"):
        head_dim = expand * cfg.hidden_size // heads
    inner = _first(cfg, "mamba_d_ssm") or heads * head_dim
    conv_dim = inner + 2 * groups * state
    return conv_dim * kernel, heads * head_dim * state


def _mamba1_elems(cfg, mtype: str) -> tuple[int, int] | None:
    """Mamba-1 (and Jamba): conv and state over the expanded inner dimension."""
    inner = _first(cfg, "intermediate_size") if mtype != "jamba" else None
    if inner is None:
        inner = _first(cfg, "mamba_expand", "expand", default=2) * cfg.hidden_size
    state = _first(cfg, "mamba_d_state", "state_size")
    kernel = _first(cfg, "mamba_d_conv", "conv_kernel")
    if None in (state, kernel):
        return None
    return inner * kernel, inner * state


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


class _LayerDims:
    """A config's attention and SSM dimensions, worked out on first use (a pure SSM has no heads)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    @functools.cached_property
    def kv_per_position(self) -> int:
        return _attention_dims(self.cfg)

    @functools.cached_property
    def ssm(self) -> tuple[int, int] | None:
        return _ssm_elems(self.cfg)


def _layer_cache(kind: str, window: int | None, dims: _LayerDims, arch: str) -> tuple[LayerCache, str | None]:
    """One layer's cache and, when the analytic path doesn't know it, the label saying so."""
    layer = LayerCache(kind)
    if kind == "dummy":
        return layer, None
    unknown = kind if kind not in _ATTENTION and kind not in _SSM else None
    if kind in _ATTENTION:
        layer.kv_per_position = dims.kv_per_position
        if _ATTENTION[kind] == "window":
            layer.window = window
    if kind in _SSM:
        if dims.ssm is None:
            unknown = f"{kind} ({arch})"
        else:
            layer.conv_elems, layer.ssm_elems = dims.ssm
    return layer, unknown


def _unknown_note(unknown: set[str], arch: str) -> str:
    return (f"the analytic cache doesn't know layer type(s) {', '.join(sorted(unknown))} of {arch!r}: "
            "cache figures come from a measured prefill where possible")


def cache_layout(config) -> CacheLayout:
    """The per-layer cache layout of a (decoder) config, analytic; ``known`` False when a part isn't."""
    cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    arch = getattr(cfg, "model_type", type(cfg).__name__)
    try:
        types, windows = _layer_types(cfg)
    except Exception as exc:  # noqa: BLE001 - an unknown architecture: the layout says so
        return CacheLayout(arch, [], False, [f"cache layout of {arch!r} unknown ({one_line(exc)})"])
    dims = _LayerDims(cfg)
    layers: list[LayerCache] = []
    unknown: set[str] = set()
    for kind, window in zip(types, windows):
        layer, label = _layer_cache(kind, window, dims, arch)
        layers.append(layer)
        if label is not None:
            unknown.add(label)
    notes = [_unknown_note(unknown, arch)] if unknown else []
    return CacheLayout(arch, layers, not unknown, notes)
