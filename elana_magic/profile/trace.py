"""Reading a Chrome trace written by torch.profiler, and what the tables say about it.

* ``ParsedTrace.load(path)``: the trace's complete events sorted into GPU work, CPU ops, annotations and
  runtime calls (``Columns``: the same events as numpy columns, so 100k-event traces analyse quickly).
* ``classify``: the kind of a kernel or operator (matmul, attention, norm/elementwise, ...).
* ``kernel_table``, ``op_table``, ``breakdown``, ``busy_idle``, ``launch_gaps``, ``annotation_spans``,
  ``decode_step_time``: the pieces of a ProfileReport; ``hta_analysis``: HolisticTraceAnalysis, when installed.
* ``analyze_trace(path)``: all of it as a ``profile.ProfileReport``.

Timestamps in traces are microseconds.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

KINDS = ("matmul", "attention", "norm/elementwise", "memcpy/memset", "communication", "other")
DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
RUNTIME_CATS = frozenset({"cuda_runtime", "cuda_driver"})
ANNOTATION_PREFIX = "elana:"


# -- reading a trace -----------------------------------------------------------------------------------

def load_events(path: str) -> list[dict]:
    """The ``traceEvents`` of a Chrome trace file (.json or .json.gz)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return data["traceEvents"] if isinstance(data, dict) else data


class Columns:
    """A list of complete events as numpy columns (µs), so that 100k-event traces analyse in milliseconds."""

    def __init__(self, events: list[dict], default_cat: str = ""):
        import numpy as np

        self.events = events
        names: dict[tuple[str, str], int] = {}
        lanes: dict[tuple, int] = {}
        ts, dur, corr, name_id, lane_id = [], [], [], [], []
        for e in events:  # one pass: this is the hot loop for 100k-event traces
            ts.append(e["ts"])
            dur.append(e.get("dur") or 0.0)
            c = (e.get("args") or {}).get("correlation")
            corr.append(c if isinstance(c, int) else -1)
            key = (e.get("name", ""), e.get("cat", default_cat))
            name_id.append(names[key] if key in names else names.setdefault(key, len(names)))
            lane = (e.get("pid"), e.get("tid"))
            lane_id.append(lanes[lane] if lane in lanes else lanes.setdefault(lane, len(lanes)))
        self.ts = np.asarray(ts, float)
        self.dur = np.asarray(dur, float)
        self.end = self.ts + self.dur
        self.corr = np.asarray(corr, np.int64)
        self.name_id = np.asarray(name_id, np.int64)
        self.lane_id = np.asarray(lane_id, np.int64)
        self.names = [nc[0] for nc in names]
        self.name_cats = list(names)
        self.lanes = list(lanes)

    def __len__(self) -> int:
        return len(self.events)

    def kind_ids(self) -> "Any":
        """Each event's index in KINDS (classified once per distinct name)."""
        import numpy as np

        table = np.array([KINDS.index(classify(name, cat)) for name, cat in self.name_cats], dtype=np.int64)
        return table[self.name_id] if len(self.name_id) else self.name_id


@dataclass
class ParsedTrace:
    """A trace's complete (``ph: "X"``) events sorted into what the tables and the timeline need."""

    device: list[dict] = field(default_factory=list)       # GPU kernels, memcpy, memset
    cpu_ops: list[dict] = field(default_factory=list)      # ATen operators
    annotations: list[dict] = field(default_factory=list)  # record_function ranges on the CPU
    runtime: list[dict] = field(default_factory=list)      # cudaLaunchKernel, cudaGraphLaunch, ...
    gpu_annotations: list[dict] = field(default_factory=list)  # the same ranges as seen on GPU lanes
    n_events: int = 0
    path: str | None = None
    _columns: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_events(cls, events: list[dict], path: str | None = None) -> "ParsedTrace":
        t = cls(path=path, n_events=len(events))
        groups = {"cpu_op": t.cpu_ops, "user_annotation": t.annotations, "gpu_user_annotation": t.gpu_annotations}
        for cat in DEVICE_CATS:
            groups[cat] = t.device
        for cat in RUNTIME_CATS:
            groups[cat] = t.runtime
        for e in events:
            if e.get("ph") == "X" and "ts" in e:
                group = groups.get(e.get("cat"))
                if group is not None:
                    group.append(e)
        for group in (t.device, t.cpu_ops, t.annotations, t.runtime, t.gpu_annotations):
            group.sort(key=lambda e: e["ts"])
        return t

    @classmethod
    def load(cls, path: str) -> "ParsedTrace":
        return cls.from_events(load_events(path), path=path)

    @property
    def on_gpu(self) -> bool:
        return bool(self.device)

    @property
    def phase_annotations(self) -> list[dict]:
        return [a for a in self.annotations if a.get("name", "").startswith(ANNOTATION_PREFIX)]

    def columns(self, group: str) -> Columns:
        """Columns of ``device``, ``runtime`` or ``cpu_ops`` (built once)."""
        if group not in self._columns:
            self._columns[group] = Columns(getattr(self, group), "kernel" if group == "device" else "cpu_op")
        return self._columns[group]


def _dur(e: dict) -> float:
    return float(e.get("dur", 0.0) or 0.0)


def _corr_int(e: dict) -> int:
    c = (e.get("args") or {}).get("correlation")
    return c if isinstance(c, int) else -1


# -- kinds ---------------------------------------------------------------------------------------------

_KIND_PATTERNS = [
    ("memcpy/memset", re.compile(r"memcpy|memset|aten::(copy_|_to_copy|clone|fill_|zero_|contiguous)\b")),
    ("communication", re.compile(r"nccl|all_?reduce|all_?gather|reduce_?scatter|all_?to_?all|c10d::|cross_device_reduce")),
    ("attention", re.compile(r"attention|attn|flash|fmha|sdpa|softmax|\bmha")),
    ("matmul", re.compile(r"gemm|gemv|nvjet|cublas|cutlass|xmma|wgmma|matmul|splitk|aten::(mm|addmm|bmm|baddbmm|linear)\b|\bdot\b")),
    ("norm/elementwise", re.compile(
        r"norm|elementwise|reduce|rms|silu|gelu|relu|act_and_mul|rotary|rope|catarray|index|embedding|triton_(poi|red|per)"
        r"|aten::(mul|add|sub|div|neg|pow|rsqrt|sqrt|mean|sum|cat|where|exp|tanh|sigmoid|cos|sin|argmax|max|min"
        r"|masked_fill|triu|tril|gather|scatter|arange|cumsum|lt|gt|eq|ne|le|ge|bitwise_\w+|logical_\w+|__and__|__or__)_?\b")),
]


def classify(name: str, cat: str = "kernel") -> str:
    """The kind of a kernel or operator: matmul, attention, norm/elementwise, memcpy/memset, communication, other."""
    if cat in ("gpu_memcpy", "gpu_memset"):
        return "memcpy/memset"
    low = name.lower()
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(low):
            return kind
    return "other"


# -- tables --------------------------------------------------------------------------------------------

def _grouped(cols: Columns, values: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    n = len(cols.names)
    out = {"count": np.bincount(cols.name_id, minlength=n)}
    for key, v in values.items():
        out[key] = np.bincount(cols.name_id, weights=v, minlength=n)
    return out


def kernel_table(trace: ParsedTrace, top: int | None = 15) -> list[dict]:
    """Per kernel name: count, total, mean, share of GPU time (summed kernel durations), kind."""
    cols = trace.columns("device")
    if not len(cols):
        return []
    g = _grouped(cols, {"total": cols.dur})
    total = float(g["total"].sum()) or 1.0
    order = g["total"].argsort()[::-1][:top] if top else g["total"].argsort()[::-1]
    return [{"name": cols.names[i], "kind": classify(*cols.name_cats[i]), "count": int(g["count"][i]),
             "total_us": float(g["total"][i]), "mean_us": float(g["total"][i] / g["count"][i]),
             "share": float(g["total"][i] / total)} for i in order]


def op_self_times(ops: list[dict]) -> list[float]:
    """Self time of each CPU op (its duration minus its direct children's), per thread."""
    self_us = [_dur(e) for e in ops]
    by_thread: dict[Any, list[int]] = defaultdict(list)
    for i, e in enumerate(ops):
        by_thread[(e.get("pid"), e.get("tid"))].append(i)
    for idx in by_thread.values():
        idx.sort(key=lambda i: (ops[i]["ts"], -_dur(ops[i])))
        stack: list[int] = []
        for i in idx:
            start = ops[i]["ts"]
            while stack and ops[stack[-1]]["ts"] + _dur(ops[stack[-1]]) <= start:
                stack.pop()
            if stack:
                self_us[stack[-1]] -= _dur(ops[i])
            stack.append(i)
    return [max(0.0, s) for s in self_us]


def op_table(trace: ParsedTrace, top: int | None = 15, self_us: list[float] | None = None) -> list[dict]:
    """Per operator name: count, total (inclusive), self, mean, share of the summed self time, kind."""
    import numpy as np

    cols = trace.columns("cpu_ops")
    if not len(cols):
        return []
    self_us = op_self_times(trace.cpu_ops) if self_us is None else self_us
    g = _grouped(cols, {"total": cols.dur, "self": np.asarray(self_us, float)})
    total_self = float(g["self"].sum()) or 1.0
    order = g["self"].argsort()[::-1][:top] if top else g["self"].argsort()[::-1]
    return [{"name": cols.names[i], "kind": classify(cols.names[i], "cpu_op"), "count": int(g["count"][i]),
             "total_us": float(g["total"][i]), "self_us": float(g["self"][i]),
             "mean_us": float(g["total"][i] / g["count"][i]), "share": float(g["self"][i] / total_self)}
            for i in order]


def breakdown(kind_ids, times) -> list[dict]:
    """Time summed per kind (``kind_ids`` index KINDS), in KINDS order, with shares."""
    import numpy as np

    sums = np.bincount(np.asarray(kind_ids, dtype=np.int64), weights=np.asarray(times, float), minlength=len(KINDS))
    total = float(sums.sum()) or 1.0
    return [{"kind": k, "time_us": float(v), "share": float(v) / total} for k, v in zip(KINDS, sums)]


def merged_intervals(starts, ends) -> tuple[Any, Any]:
    """Union of [start, end) intervals: the merged starts and ends, sorted."""
    import numpy as np

    if len(starts) == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(starts, kind="stable")
    s, e = np.asarray(starts)[order], np.maximum.accumulate(np.asarray(ends)[order])
    new = np.empty(len(s), bool)
    new[0] = True
    new[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(s) - 1)
    return s[first], e[last]


def _summary(values) -> dict[str, Any]:
    import numpy as np

    v = np.asarray(values, float)
    if not len(v):
        return {"n": 0, "total_us": 0.0, "median_us": None, "p90_us": None, "max_us": None}
    return {"n": int(len(v)), "total_us": float(v.sum()), "median_us": float(np.median(v)),
            "p90_us": float(np.percentile(v, 90)), "max_us": float(v.max())}


def busy_idle(trace: ParsedTrace) -> dict[str, Any]:
    """GPU busy vs idle between the first and last GPU activity (kernels and copies on any stream, merged)."""
    cols = trace.columns("device")
    s, e = merged_intervals(cols.ts, cols.end)
    if not len(s):
        return {"window_us": 0.0, "busy_us": 0.0, "idle_us": 0.0, "busy_share": None, "idle_share": None}
    window = float(e[-1] - s[0])
    busy = float((e - s).sum())
    return {"window_us": window, "busy_us": busy, "idle_us": window - busy,
            "busy_share": busy / window if window else None, "idle_share": (window - busy) / window if window else None}


def launch_gaps(trace: ParsedTrace) -> dict[str, Any]:
    """Idle gaps between GPU activity, and launch delay (kernel start minus its launch call's start)."""
    import numpy as np

    dev = trace.columns("device")
    s, e = merged_intervals(dev.ts, dev.end)
    gaps = s[1:] - e[:-1]
    rt = trace.columns("runtime")
    plain = np.array(["Graph" not in rt.names[i] for i in range(len(rt.names))], bool)
    keep = (rt.corr >= 0) & (plain[rt.name_id] if len(rt) else np.zeros(0, bool))
    rc, rts = rt.corr[keep], rt.ts[keep]
    order = np.argsort(rc)
    rc, rts = rc[order], rts[order]
    pos = np.searchsorted(rc, dev.corr)
    pos = np.minimum(pos, max(len(rc) - 1, 0))
    hit = (dev.corr >= 0) & (len(rc) > 0) & (rc[pos] == dev.corr) if len(rc) else np.zeros(len(dev), bool)
    delays = dev.ts[hit] - rts[pos[hit]]
    return {"gaps": _summary(gaps[gaps > 0]), "launch_delay": _summary(delays)}


def annotation_spans(trace: ParsedTrace) -> list[dict]:
    """Each ``elana:*`` annotation with its CPU span and the GPU span/busy time of the kernels it launched.

    Kernels belong to an annotation when their launch call (same correlation id) ran inside it on the same
    thread; a graph replay links all of the graph's kernels to one cudaGraphLaunch.
    """
    import numpy as np

    anns = trace.phase_annotations
    rows = [{"name": a["name"], "cpu_start_us": a["ts"], "cpu_us": _dur(a), "kernels": 0, "gpu_start_us": None,
             "gpu_end_us": None, "gpu_span_us": None, "gpu_busy_us": None} for a in anns]
    if not anns or not trace.device:
        return rows
    dev, rt = trace.columns("device"), trace.columns("runtime")
    by_corr = np.argsort(dev.corr, kind="stable")
    kcorr = dev.corr[by_corr]
    threads = {lane: np.flatnonzero(rt.lane_id == i) for i, lane in enumerate(rt.lanes)}  # ts-sorted per thread
    for a, row in zip(anns, rows):
        idx = threads.get((a.get("pid"), a.get("tid")))
        if idx is None:
            continue
        t0, t1 = a["ts"], a["ts"] + _dur(a)
        calls = idx[np.searchsorted(rt.ts[idx], t0, "left"): np.searchsorted(rt.ts[idx], t1, "right")]
        corr = rt.corr[calls]
        corr = corr[corr >= 0]
        lo, hi = np.searchsorted(kcorr, corr, "left"), np.searchsorted(kcorr, corr, "right")
        counts = hi - lo
        if not counts.sum():
            continue
        ks = by_corr[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())]
        s, e = merged_intervals(dev.ts[ks], dev.end[ks])
        row.update(kernels=int(len(ks)), gpu_start_us=float(s[0]), gpu_end_us=float(e[-1]),
                   gpu_span_us=float(e[-1] - s[0]), gpu_busy_us=float((e - s).sum()))
    return rows


_STEP = re.compile(r"^elana:decode_step\[\d+\]$")


def decode_step_time(spans: list[dict]) -> dict[str, Any] | None:
    """Time per decode step read from the trace: on the GPU, (last step's last kernel end - first step's
    first kernel start) / steps, and the median step-to-step period; on the CPU, the annotations' durations."""
    steps = [s for s in spans if _STEP.match(s["name"])]
    if not steps:
        return None
    cpu = _summary([s["cpu_us"] for s in steps])
    out: dict[str, Any] = {"steps": len(steps), "cpu_mean_us": cpu["total_us"] / cpu["n"],
                           "cpu_median_us": cpu["median_us"], "gpu_mean_us": None,
                           "gpu_median_period_us": None, "gpu_median_span_us": None}
    gpu = sorted((s for s in steps if s["gpu_start_us"] is not None), key=lambda s: s["gpu_start_us"])
    if gpu and len(gpu) == len(steps):
        out["gpu_mean_us"] = (gpu[-1]["gpu_end_us"] - gpu[0]["gpu_start_us"]) / len(gpu)
        periods = [b["gpu_start_us"] - a["gpu_start_us"] for a, b in zip(gpu, gpu[1:])]
        out["gpu_median_period_us"] = _summary(periods)["median_us"] if periods else gpu[0]["gpu_span_us"]
        out["gpu_median_span_us"] = _summary([s["gpu_span_us"] for s in gpu])["median_us"]
    return out


def graph_visibility_note(trace: ParsedTrace) -> str | None:
    """Say plainly when CUDA graph launches appear without the kernels inside them."""
    launches = {_corr_int(r) for r in trace.runtime if "GraphLaunch" in r.get("name", "")} - {-1}
    if not launches:
        return None
    shown = sum(1 for e in trace.device if _corr_int(e) in launches)
    if shown:
        return f"CUDA graphs: the trace shows the {shown} GPU kernels and copies inside {len(launches)} graph replays"
    return ("CUDA graphs: this torch/CUPTI shows only the graph launches, not the kernels inside them; "
            "profile with --no-cuda-graph to see the eager path's kernels")


# -- optional HolisticTraceAnalysis ---------------------------------------------------------------------

def hta_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("hta") is not None


def hta_analysis(path: str, top: int = 10) -> dict[str, Any]:
    """HTA's kernel-type breakdown, top kernels and idle-time breakdown for rank 0 (HTA must be installed)."""
    from hta.trace_analysis import TraceAnalysis

    quiet = [logging.getLogger(n) for n in ("hta", "")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ta = TraceAnalysis(trace_dir=os.path.dirname(path) or ".", trace_files={0: os.path.basename(path)})
            kernel_types, kernels = ta.get_gpu_kernel_breakdown(visualize=False, num_kernels=top)
            idle = ta.get_idle_time_breakdown(visualize=False)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    idle_df = idle[0] if isinstance(idle, tuple) else idle
    return {
        "kernel_type_breakdown": _records(kernel_types),
        "top_kernels": _records(kernels)[:top],
        "idle_time": _records(idle_df),
    }


def _records(df) -> list[dict]:
    if df is None:
        return []
    return [{str(k): v for k, v in row.items()} for row in df.to_dict(orient="records")]
