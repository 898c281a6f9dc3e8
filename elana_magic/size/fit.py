"""The largest batch (at a length) or the largest length (at a batch) that fits the memory free now.

``largest_fit(model, seq_len=4096) -> FitReport`` (the largest batch) or ``largest_fit(model, batch=8)``
(the largest context length). The memory needed is the analytic size (model + cache, from the
config), plus the activation peak measured by a latency measurement of this model in this process
when there is one (``latency.memory.ACTIVATION_PEAKS``; scaled with batch x length from the measured prefill),
and the analytic size alone otherwise: the report says which. With a GPU, the answer is for the
GPU's free memory (a model already on the GPU holds its share: only the cache and activations are
added); without one, for the system memory available (MemAvailable), and the report says so.
"""

from __future__ import annotations

from typing import Any

from ..core.envelope import ENVELOPE_KEYS, FORMAT_VERSION
from ..core.report import DataReport
from ..core.schema import INT, NUMBER, TEXT, optional
from ..core.units import format_bytes
from .weights import SizeError, count_weights, dtype_name, parse_dtype

MAX_SEARCH_LEN = 1 << 24


def available_memory(device=None) -> dict[str, Any]:
    """Free GPU memory where a GPU exists, else the system memory available, with where it came from."""
    from .measure import gpu_memory

    gpu = gpu_memory(device)
    if gpu is not None:
        return {"bytes": gpu["free_bytes"], "where": f"free memory of {gpu['name']} (cuda:{gpu['index']})",
                "gpu": True, "total_bytes": gpu["total_bytes"]}
    mem = system_memory()
    return {**mem, "where": f"no GPU: {mem['where']}", "gpu": False}


def system_memory() -> dict[str, Any]:
    """The system memory available now (MemAvailable): bytes, total_bytes and where it was read."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        free, total, source = int(vm.available), int(vm.total), "psutil"
    except ImportError:
        info = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                info[key] = int(value.split()[0]) * 1024
        free, total, source = info["MemAvailable"], info["MemTotal"], "/proc/meminfo"
    return {"bytes": free, "where": f"system memory available ({source} MemAvailable)", "total_bytes": total}


def _measured_activation(model, on_gpu: bool) -> dict[str, Any] | None:
    from ..latency.memory import ACTIVATION_PEAKS, peaks_key

    peak = ACTIVATION_PEAKS.get(peaks_key(model))
    if peak is None or (peak["kind"] == "allocated") != on_gpu:
        return None
    return peak


def largest_fit(target, seq_len: int | None = None, batch: int | None = None, cache_dtype: Any = None,
                memory: dict[str, Any] | None = None, binary: bool = False) -> "FitReport":
    """Give ``seq_len`` for the largest batch, or ``batch`` for the largest length; ``memory`` overrides the
    available memory (``{"bytes": N, "where": "...", "gpu": bool}``). A length is at most the model's
    positions (``max_position_embeddings``): a longer ``seq_len`` is refused, the largest length capped.
    ``binary``: GiB (2**30 bytes) in the report instead of GB."""
    import torch

    from .cache_shapes import cache_layout
    from .measure import _model_device, _model_dtype, _resolve

    if (seq_len is None) == (batch is None):
        raise SizeError("give a length for the largest batch (--max-batch --seq-len L) or a batch for the "
                        "largest length (--max-seq-len --batch B)")
    for name, v in (("seq_len", seq_len), ("batch", batch)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise SizeError(f"{name} must be a positive integer, got {v!r}")
    model, config, label, source = _resolve(target)
    if config is None:
        raise SizeError(f"{type(model).__name__} has no transformers config: its cache can't be sized")
    text_config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    limit = getattr(text_config, "max_position_embeddings", None)
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None
    if seq_len is not None and limit and seq_len > limit:
        raise SizeError(f"seq_len {seq_len} exceeds the model's maximum of {limit} positions: give --seq-len "
                        f"{limit} or less")
    layout = cache_layout(config)
    if not layout.known:
        raise SizeError(f"the cache of {layout.arch} is unknown to the analytic path: no answer")
    weights = count_weights(model)
    model_bytes = weights.params_bytes + weights.buffers_bytes
    kv_dtype = parse_dtype(cache_dtype) or _model_dtype(model, config)
    device = _model_device(model)
    mem = memory or available_memory(device if device.type == "cuda" else None)
    on_gpu = bool(mem["gpu"])
    # weights already in the memory we answer for hold their share of it already
    resident = (on_gpu and device.type == "cuda") or (not on_gpu and device.type == "cpu")
    fixed = 0 if resident else model_bytes
    peak = _measured_activation(model, on_gpu) if isinstance(target, torch.nn.Module) else None
    act_per_token = peak["activation_bytes"] / peak["tokens"] if peak else 0.0

    def need(b: int, length: int) -> float:
        cache = sum(kv + ssm for kv, ssm in layout.layer_bytes(b, length, kv_dtype.itemsize, 4))
        return fixed + cache + act_per_token * b * length

    free = mem["bytes"]
    if seq_len is not None and need(2, seq_len) == need(1, seq_len):
        raise SizeError(f"the analytic cache of {layout.arch} takes no memory per sequence: no largest batch to answer")
    if seq_len is not None:
        answer = _largest(lambda b: need(b, seq_len) <= free, MAX_SEARCH_LEN)
        mode, at = "batch", {"seq_len": seq_len}
    else:
        answer = _largest(lambda n: need(batch, n) <= free, MAX_SEARCH_LEN)
        mode, at = "seq_len", {"batch": batch}
        if limit and answer > limit:
            at["max_position_embeddings"] = limit
            at["memory_would_hold"] = answer
            answer = limit
    b, n = (answer, seq_len) if mode == "batch" else (batch, answer)
    notes = []
    if peak:
        basis = (f"analytic model + cache, plus the activation peak measured in this process (prefill at batch"
                 f" {peak['batch']} x prompt {peak['prompt_len']}: {format_bytes(peak['activation_bytes'], binary=binary)},"
                 " scaled with batch x length)")
    else:
        basis = "analytic model + cache alone (no latency measurement of this model in this process: activations not counted)"
    if resident:
        notes.append("the model's weights are already in this memory: only the cache (and activations) are added")
    if mode == "seq_len" and need(batch, 2) == need(batch, 1) and answer:
        notes.append("the cache does not grow with length (recurrent state only): any length fits")
    if mode == "seq_len" and at.get("max_position_embeddings"):
        held = "any length" if at["memory_would_hold"] >= MAX_SEARCH_LEN else f"{at['memory_would_hold']} tokens"
        notes.append(f"the model takes at most {at['max_position_embeddings']} positions (the memory would hold "
                     f"{held}): the answer is capped there")
    data = {"model": label, "source": source, "mode": mode, **at, "answer": answer,
            "memory_bytes": free, "memory_where": mem["where"], "on_gpu": on_gpu, "basis": basis,
            "measured_activation": peak, "model_bytes": model_bytes, "model_resident": resident,
            "cache_dtype": dtype_name(kv_dtype), "needed_bytes_at_answer": need(b, n) if answer else None,
            "binary": bool(binary), "notes": notes}
    return FitReport(data)


def _largest(fits, hi: int) -> int:
    """The largest n in [1, hi] with fits(n) (fits is monotone: true then false), 0 when none."""
    if not fits(1):
        return 0
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


class FitReport(DataReport):
    """The largest batch or length that fits, the memory it was answered for, and on what basis."""

    kind = "size-fit"
    schema = {"model": TEXT, "mode": TEXT, "answer": optional(INT), "memory_bytes": NUMBER, "memory_where": TEXT,
              "basis": TEXT}


    def to_dict(self) -> dict[str, Any]:
        """The answer, after its kind, format version and creation time (so a saved history reads it back)."""
        return {"kind": self.kind, "format_version": FORMAT_VERSION, "created": self.envelope.created, **self.data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FitReport":
        return cls({k: v for k, v in data.items() if k not in ENVELOPE_KEYS or k == "notes"})

    def _lines(self) -> list[str]:
        d = self.data
        if d["mode"] == "batch":
            head = (f"largest batch at seq_len {d['seq_len']}: {d['answer']}" if d["answer"]
                    else f"not even batch 1 fits at seq_len {d['seq_len']}")
        else:
            head = (f"largest seq_len at batch {d['batch']}: {d['answer']}" if d["answer"]
                    else f"not even 1 token fits at batch {d['batch']}")
        binary = bool(d.get("binary"))
        lines = [f"elana size: {d['model']} · {head}",
                 f"memory: {format_bytes(d['memory_bytes'], binary=binary)} ({d['memory_where']})",
                 f"basis: {d['basis']}"]
        if d.get("needed_bytes_at_answer"):
            lines.append(f"needed at the answer: {format_bytes(d['needed_bytes_at_answer'], binary=binary)}"
                         f" (cache dtype {d['cache_dtype']})")
        return lines + [f"note: {n}" for n in d["notes"]]

    def to_text(self) -> str:
        return "\n".join(self._lines())

    def to_html(self) -> str:
        import html

        first, *rest = self._lines()
        return ("<div class='elana-size-fit'><b>" + html.escape(first) + "</b>"
                + "".join(f"<div>{html.escape(x)}</div>" for x in rest) + "</div>")

