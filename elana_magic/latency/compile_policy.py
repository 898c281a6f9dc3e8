"""Compile policy: the compiled step (whole forward or one compiled decoder block for every layer), its
process-wide caches, the watch that says whether a compile was new, reused or fell back, and the tolerances
a compiled step's logits are held to against an eager one."""

from __future__ import annotations

import contextlib
import functools
import hashlib
from typing import Any

import torch

from .errors import GenerationInputError

def _model_logits(model: torch.nn.Module, kwargs: dict) -> torch.Tensor:
    return model(**kwargs).logits


_COMPILED: dict[str, Any] = {}

# Variants of the compiled step this process may keep (one per model x batch x cache length): torch.compile's
# default of 8 per function is raised to this while our step compiles (``_recompile_room``), as a grid reaches
# 8 quickly. Past it, dynamo runs the step uncompiled: ``CompileWatch`` sees it and the engine is named for
# what ran.
COMPILE_VARIANTS = 256   # per code object while we compile: a prefill and a decode variant per model x shape

COMPILE_MODES = ("regional", "whole")


def compile_mode(compile: bool | str | None) -> str | None:
    """``compile`` as a mode: True -> "regional" (the default), "whole", "regional"; False/None -> None."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return "regional"
    if isinstance(compile, str) and compile.lower() in COMPILE_MODES:
        return compile.lower()
    raise GenerationInputError(f"compile must be True, False, 'regional' or 'whole', got {compile!r}")


def _compiled_logits():
    """``_model_logits`` compiled once per process (Inductor, static shapes); torch.compile's cache holds one
    entry per model and shape, so a second session of the same shape reuses the first one's kernels."""
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(_model_logits, dynamic=False)
    return _COMPILED["step"]


_COMPILED_SHAPES: set[tuple] = set()


def _shapes_hash(module: torch.nn.Module) -> str:
    parts = [type(module).__qualname__] + [f"{n}:{tuple(t.shape)}:{t.dtype}" for n, t in
                                           (*module.named_parameters(), *module.named_buffers())]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def step_key(model: torch.nn.Module, mode: str, blocks: torch.nn.ModuleList | None, *shape: Any) -> tuple:
    """What a compiled variant is compiled for: the compiled code's module (one decoder block when regional, the
    model when whole) by class and parameter shapes, not by identity, so that a deep copy or a second model of
    the same class and shapes is known to reuse the code (no compile event) rather than taken for a fallback."""
    module = blocks[0] if mode == "regional" and blocks is not None and len(blocks) else model
    return (mode, _shapes_hash(module), *shape)


class CompileWatch:
    """Around the compiled step's first calls: did dynamo compile a new variant, reuse one, or fall back?

    A new variant bumps ``torch._dynamo.utils.counters["frames"]["ok"]``; a fallback (recompile limit
    hit) logs "torch._dynamo hit config.recompile_limit" once and then runs the step uncompiled silently
    (no counter moves), so a shape this process never compiled that compiles nothing fell back as well."""

    def __init__(self, key: tuple):
        """``key``: ``step_key(...)`` of the step about to compile."""
        import logging

        self.key = key
        self._logger = logging.getLogger("torch._dynamo.convert_frame")
        self.limit_message: str | None = None
        self.variant: str | None = None

    def __enter__(self) -> "CompileWatch":
        import logging

        from torch._dynamo.utils import counters

        watch = self

        class _Hook(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                text = record.getMessage()
                if "hit config." in text:
                    watch.limit_message = text.splitlines()[0].strip()

        self._ok = counters["frames"]["ok"]
        self._hook = _Hook(level=logging.WARNING)
        self._logger.addHandler(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        from torch._dynamo.utils import counters

        self._logger.removeHandler(self._hook)
        compiled = counters["frames"]["ok"] > self._ok
        if self.limit_message is not None or not (compiled or self.key in _COMPILED_SHAPES):
            self.variant = "fell back"
        else:
            self.variant = "new" if compiled else "reused"
            _COMPILED_SHAPES.add(self.key)

    @property
    def fell_back(self) -> bool:
        return self.variant == "fell back"

    def reason(self) -> str:
        if self.limit_message:
            return self.limit_message
        try:
            from torch._dynamo import config

            limit = getattr(config, "recompile_limit", getattr(config, "cache_size_limit", None))
        except Exception:  # noqa: BLE001
            limit = None
        return f"torch.compile compiled no variant for this shape (its recompile limit, {limit} or our"\
               f" {COMPILE_VARIANTS} while compiling, was reached earlier)"


def _layer_forward(layer: torch.nn.Module, /, *args, **kwargs):
    return layer.forward(*args, **kwargs)


def _compiled_layer():
    """One compiled decoder-block forward for every layer of every model (the module is an argument, its
    parameters graph inputs, so identical layers pass the same guards and share one artifact)."""
    if "layer" not in _COMPILED:
        _COMPILED["layer"] = torch.compile(_layer_forward, dynamic=False)
    return _COMPILED["layer"]


def repeated_blocks(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The model's stack of decoder layers: the longest ModuleList of >= 2 modules of one type (None if none)."""
    best = None
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) >= 2:
            if len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best)):
                best = module
    return best


class _LayerCacheView:
    """The session's cache as one decoder layer sees it: its own cache layer, whatever ``layer_idx`` it passes.

    The layer index is the one thing that differs between layers; read through the real cache it becomes a
    guarded constant and every layer compiles again."""

    def __init__(self, layer) -> None:
        self.layer = layer

    def update(self, key_states, value_states, layer_idx=None, *args, **kwargs):
        return self.layer.update(key_states, value_states, *args, **kwargs)


def _regional_call(compiled, layer, cache, view, /, *args, **kwargs):
    for key in ("cache", "past_key_values"):
        if kwargs.get(key) is cache:
            kwargs[key] = view
    return compiled(layer, *args, **kwargs)


@contextlib.contextmanager
def regional_compiled(blocks: torch.nn.ModuleList, cache, compiled=None):
    """Route every block's call through one compiled block forward while inside (nothing changed after).

    Uses the hook ``nn.Module.compile`` uses (``_compiled_call_impl``), set only for the compiled step's warm-up
    and capture (the graph replays the kernels) and put back on exit, so the model stays as the user had it."""
    compiled = compiled or _compiled_layer()
    layers = list(getattr(cache, "layers", []))
    if len(layers) < len(blocks):
        raise RuntimeError(f"regional compile needs one cache layer per block ({len(layers)} for {len(blocks)})")
    saved = [block.__dict__.get("_compiled_call_impl") for block in blocks]
    try:
        for block, cache_layer in zip(blocks, layers):
            block._compiled_call_impl = functools.partial(_regional_call, compiled, block, cache, _LayerCacheView(cache_layer))
        yield
    finally:
        for block, value in zip(blocks, saved):
            block._compiled_call_impl = value


def _compile_counters() -> dict:
    """Dynamo's process-wide counts: frames it compiled and graphs it produced (to tell reuse from compiling)."""
    try:
        from torch._dynamo.utils import counters

        return {"frames": int(counters["stats"]["unique_graphs"]), "calls": int(counters["stats"]["calls_captured"])}
    except Exception:  # noqa: BLE001 - private API
        return {}


@contextlib.contextmanager
def _recompile_room(n: int):
    """Let torch.compile keep ``n`` more entries per code object during our compile (its default is 8; one per
    shape, and whole-model compiles of several models share one function), restored on exit."""
    import torch._dynamo.config as cfg

    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    limits = {name: max(getattr(cfg, name), n)}
    if hasattr(cfg, "accumulated_recompile_limit"):  # the total over every code object (256 by default)
        limits["accumulated_recompile_limit"] = max(cfg.accumulated_recompile_limit, 4 * n)
    with cfg.patch(**limits):
        yield


# Fused bf16 kernels vs eager: relative L2 error of the last-position logits, per decoder layer (rounding
# differences add up layer by layer: measured on H100, random bf16 weights, about 1.8e-3 per layer for
# Llama-3.2-1B (16 layers, 2.8%) and Llama-3.1-8B (32 layers, 5.7%)). A wrong step (stale slot, wrong
# position) is off by O(1) and picks other tokens.
COMPILE_REL_TOL_PER_LAYER = 3e-3


def top1_gap_tolerance(dtype: torch.dtype, compile_tol: float | None = None) -> float:
    """How far (relative to the largest logit) the token a graph picks may score below eager's best.

    Uncompiled graph: 1e-4 in fp32, 2e-2 in bf16/fp16. Compiled: the rounding of fused kernels grows with
    depth like the relative error (``compile_tolerance``), so the gap is allowed the same relative size
    (on the H200 the 8B shape at batch 16 had relative error 0.057, inside 0.096, and a top-1 gap of 2.5%
    of the largest logit, which a fixed 2% refused). fp32 fused kernels round 5 orders less: 1e-4 stays."""
    if dtype == torch.float32:
        return 1e-4
    return max(2e-2, compile_tol or 0.0)


def compile_tolerance(model: torch.nn.Module) -> float:
    """Relative L2 logit error allowed between the compiled step and an eager one."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    layers = getattr(config, "num_hidden_layers", None)
    return COMPILE_REL_TOL_PER_LAYER * (layers if isinstance(layers, int) and layers > 0 else 32)


def compare_logits(graph: torch.Tensor, eager: torch.Tensor, dtype: torch.dtype, compile_tol: float,
                   compiled: bool, what: str = "graph") -> tuple[float, float]:
    """``(max abs diff, relative L2 error)`` of a captured step's last-position logits against an eager step's from
    the same state; RuntimeError when they differ beyond tolerance or pick another greedy token.

    Compiled: relative error <= ``compile_tol`` and, per row, the picked token's eager score within the top-1 gap
    tolerance of eager's best (a random-weight model's top two logits are often that close). Uncompiled: the same
    greedy token and every logit within ``top1_gap_tolerance`` of the largest."""
    graph, eager = graph.float(), eager.float()
    diff = (graph - eager).abs().max().item()
    scale = max(1.0, eager.abs().max().item())
    tol = top1_gap_tolerance(dtype, compile_tol if compiled else None)
    rel_err = ((graph - eager).norm() / eager.norm().clamp_min(1e-12)).item()
    if compiled:
        picked = eager.gather(-1, graph.argmax(-1, keepdim=True)).squeeze(-1)
        gap = (eager.max(-1).values - picked).max().item()
        if rel_err > compile_tol or gap > tol * scale:
            raise RuntimeError(f"compiled {what}'s logits differ from eager: relative error {rel_err:.3g} "
                               f"(tolerance {compile_tol:.3g}), top-1 gap {gap:.3g} (tolerance {tol * scale:.3g})")
        return diff, rel_err
    if diff > tol * scale or not torch.equal(graph.argmax(-1), eager.argmax(-1)):
        raise RuntimeError(f"{what} logits differ from eager by {diff:.3g} (tolerance {tol * scale:.3g})")
    return diff, rel_err
