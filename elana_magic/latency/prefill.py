"""The prefill engine: on CUDA, where decode runs a CUDA graph, the prefill of the fixed batch and prompt shape
is captured too (in the same static cache, compiled like the decode step when that one is), checked once
against transformers' eager prefill (``compile_policy.compare_logits``: relative logit error and greedy token),
and on any failure the prefill stays eager, with a note. ``prefill="eager"`` keeps plain transformers' prefill.

These functions work on a ``session.GenerationSession`` (its cache, inputs and forward).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from .compile_policy import COMPILE_VARIANTS, _recompile_room, compare_logits
from .devices import _side_stream, graph_capture


def setup_prefill(s: Any) -> None:
    """The captured prefill where decode runs a graph (``prefill="auto"``), checked once against eager."""
    s.prefill_engine, s._prefill_run = "eager", None
    if s.prefill_choice == "eager" or not s.engine.startswith("cuda-graph"):
        return
    compiled = s.engine == "cuda-graph+compile"
    try:
        with torch.inference_mode():
            run = s._capture_prefill(compiled)
            captured = run().float().clone()
            eager = s._eager_prefill().float()
            diff, rel = compare_logits(captured, eager, s.dtype, s.compile_tol, compiled, "prefill")
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - capture or check failed: the eager prefill, visibly
        text = str(exc).strip().splitlines()
        s.prefill_note = (f"captured prefill ({s.engine}) not used ({type(exc).__name__}: "
                          f"{text[0] if text else ''}): eager prefill")
        s._prefill_graph = None
        if s._graph is not None:
            s._reset_static()
        return
    s.prefill_check = {"max_abs_diff": diff, "rel_err": rel}
    s._prefill_run, s.prefill_engine = run, s.engine
    if s._graph is not None:
        s._reset_static()


def capture_prefill(s: Any, compiled: bool) -> Callable[[], torch.Tensor]:
    """The prefill in a CUDA graph sharing the decode graph's pool and static cache; the graph rewinds the
    cache itself. Returns what runs it: a replay that leaves the first token in ``_next`` and returns the
    last position's logits."""
    layers = s._static_layers()
    if s._graph is None or not layers:
        raise RuntimeError("no static cache to prefill into")
    stream = _side_stream(s.device)
    stream.wait_stream(torch.cuda.current_stream(s.device))
    room = _recompile_room(COMPILE_VARIANTS + 2 * len(s._blocks or ())) if compiled else contextlib.nullcontext()
    graph = torch.cuda.CUDAGraph()
    mask = prefill_mask(s)
    with room:  # through the capture as well (see session._setup_graph)
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up (the first call compiles the prompt's shape)
                s._reset_static()
                s._forward(s.input_ids, s._cache, mask, compiled)
        torch.cuda.current_stream(s.device).wait_stream(stream)
        with graph_capture(graph, s.device, pool=s._graph.pool()):
            for layer in layers:
                layer.cumulative_length.zero_()
            logits = s._forward(s.input_ids, s._cache, mask, compiled)[:, -1, :]
            s._next.copy_(logits.argmax(-1, keepdim=True))

    def replay() -> torch.Tensor:
        graph.replay()
        return logits

    s._prefill_graph = graph  # kept alive with the session
    return replay


def prefill_mask(s: Any) -> torch.Tensor | None:
    """The prefill's additive causal mask over the static cache (batch x 1 x prompt x slots: 0 where a position may
    attend, the dtype's min after it), given in the warm-up and in the capture alike.

    While a CUDA graph is captured, transformers builds this mask itself (it may not read the cache's tensor offset
    then), while outside a capture it passes none (SDPA's ``is_causal``): the compiled block saw other arguments in
    the capture than in its warm-up and compiled again inside the capture, which breaks it. None for caches with
    sliding-window or other special layers, whose masks only transformers builds."""
    layers = s._static_layers()
    if any(getattr(layer, "is_sliding", False) for layer in layers) or len(layers) != len(s._cache.layers):
        return None
    embed = getattr(s.model, "get_input_embeddings", lambda: None)()
    dtype = getattr(getattr(embed, "weight", None), "dtype", s.dtype)
    dtype = dtype if dtype.is_floating_point else s.dtype
    slots = torch.arange(s.prompt_len + s.gen_len, device=s.device).view(1, 1, 1, -1)
    rows = torch.arange(s.prompt_len, device=s.device).view(1, 1, -1, 1)
    mask = torch.where(slots <= rows, 0.0, torch.finfo(dtype).min).to(dtype)
    return mask.expand(s.batch, 1, s.prompt_len, slots.shape[-1])
