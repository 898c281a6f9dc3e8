"""Kernel-level profiles: capture with torch.profiler, write a Chrome trace for Perfetto, read it back.

* ``profile_block(out, label)``: a context manager around any code; ``prof.report`` afterwards.
* ``profile_phase(model, phase, ...)``: TTFT / TPOT / TTLT through ``phases.GenerationSession`` (the same
  runners as ``%elana_latency``), warmed up and timed once without the profiler, then captured with one
  annotation per phase and per decode step (``elana:prefill[0]``, ``elana:decode_step[3]``, ...).
* ``analyze_trace(path)``: the tables of any Chrome trace written by torch.profiler.

The analysis reads the trace file that was written (not the profiler's in-memory events), so what the
report says is what Perfetto shows. Timestamps in traces are microseconds.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import logging
import os
import re
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .report import Report, html_table, text_table
from .units import format_time

DEFAULT_OUT = "elana_traces"
PERFETTO_URL = "https://ui.perfetto.dev"
PERFETTO_NOTE = f"open it in {PERFETTO_URL} (Open trace file; it stays on your machine)"
PHASES = ("ttft", "tpot", "ttlt")
DEFAULT_STEPS = {"ttft": 3, "tpot": 16, "ttlt": 1}
KINDS = ("matmul", "attention", "norm/elementwise", "memcpy/memset", "communication", "other")
DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
RUNTIME_CATS = frozenset({"cuda_runtime", "cuda_driver"})
ANNOTATION_PREFIX = "elana:"


class ProfileError(ValueError):
    """Bad input or a failed capture, in one line (the magic shows it as a UsageError)."""


# -- names and folders ---------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_label(label: str) -> str:
    """A label usable as one file/folder name; path separators or '..' are refused, other odd characters become '_'."""
    label = str(label).strip()
    if not label:
        raise ProfileError("the label is empty: pass a short name such as `--label llama-decode`")
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in label for s in seps) or label in (".", "..") or ".." in label:
        raise ProfileError(f"label {label!r} contains a path separator or '..': use a plain name, and --out for the folder")
    return _UNSAFE.sub("_", label).strip("._") or "trace"


def check_writable_folder(folder: str) -> str:
    """The absolute folder if it is (or can be created as) a writable directory; otherwise a ProfileError."""
    folder = os.path.abspath(os.path.expanduser(folder))
    probe = folder
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ProfileError(f"cannot write traces to {folder!r}: {probe!r} is not a directory; pick another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ProfileError(f"cannot write traces to {folder!r}: {probe!r} is not writable; pick another --out")
    return folder


def trace_folder(out: str | None, label: str) -> str:
    """``out`` itself when given, else ``elana_traces/<label>/`` (checked, not yet created)."""
    return check_writable_folder(out if out else os.path.join(DEFAULT_OUT, label))


def new_trace_path(folder: str, label: str, gz: bool = False) -> str:
    """A fresh file name ``<label>-<UTC time>.pt.trace.json[.gz]`` in ``folder`` (never overwrites)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    ext = ".pt.trace.json.gz" if gz else ".pt.trace.json"
    path = os.path.join(folder, f"{label}-{stamp}{ext}")
    n = 1
    while os.path.exists(path):
        path = os.path.join(folder, f"{label}-{stamp}-{n}{ext}")
        n += 1
    return path


# -- capture -------------------------------------------------------------------------------------------

def profiler_running() -> bool:
    import torch

    return bool(torch._C._autograd._profiler_enabled())


def _activities(cuda: bool | None) -> list:
    from torch.profiler import ProfilerActivity, supported_activities

    supported = supported_activities()
    want_cuda = cuda if cuda is not None else _cuda_available()
    acts = [ProfilerActivity.CPU]
    if want_cuda and ProfilerActivity.CUDA in supported:
        acts.append(ProfilerActivity.CUDA)
    return acts


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def cuda_graph_warmup_needed() -> bool:
    """Whether kernels inside CUDA graphs need CUPTI started before the graph is captured.

    Since CUDA 12.6 torch lets CUPTI initialise lazily with graphs present, and the old workaround (an
    empty profiler session before capture) can leave kernel collection off for the whole process on new
    stacks; so it is only used on older CUDA.
    """
    import torch
    from torch.torch_version import TorchVersion

    cuda = getattr(torch.version, "cuda", None)
    return bool(cuda) and TorchVersion(cuda) < "12.6"


def prepare_cuda_graph_visibility() -> bool:
    """The pre-capture workaround (``torch.profiler._utils._init_for_cuda_graphs``); False where unavailable."""
    if not _cuda_available():
        return False
    try:
        from torch.profiler._utils import _init_for_cuda_graphs
    except ImportError:
        return False
    _init_for_cuda_graphs()
    return True


def energy_window_open() -> bool:
    """True while an energy window samples power (its "elana-sampler" thread runs only inside a window)."""
    import threading

    return any(t.name.startswith("elana-sampler") for t in threading.enumerate())


def check_can_profile() -> None:
    """Refuse to start inside another profiler or inside an energy window (the profiler's own work would
    be counted as the model's energy)."""
    if profiler_running():
        raise ProfileError("a torch profiler is already running: finish it before starting %elana_profile")
    if energy_window_open():
        raise ProfileError("an energy window is open (%%elana_energy / measure_energy): profile outside it, "
                           "or the profiler's overhead would be measured as the model's energy")


@contextlib.contextmanager
def capture(cuda: bool | None = None) -> Iterator[Any]:
    """A running ``torch.profiler.profile`` (CPU, plus CUDA when available); always stopped on exit."""
    import torch

    check_can_profile()
    prof = torch.profiler.profile(activities=_activities(cuda), record_shapes=False, with_stack=False)
    with warnings.catch_warnings():  # torch's note about schedule cycles does not apply to one capture
        warnings.filterwarnings("ignore", message=".*Profiler clears events at the end of each cycle")
        prof.start()
    try:
        yield prof
        _synchronize()
    finally:
        prof.stop()  # also on errors and Ctrl-C: a profiler is never left running


def export_trace(prof, path: str) -> str:
    """Write the Chrome trace (gzipped when ``path`` ends in .gz); a write failure is a ProfileError."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        prof.export_chrome_trace(path)
    except OSError as exc:
        raise ProfileError(f"could not write the trace to {path!r}: {exc.strerror or exc}; pick another --out") from None
    return path


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


# -- the report ----------------------------------------------------------------------------------------

@dataclass(repr=False, eq=False)  # repr=False: IPython then uses Report._repr_pretty_
class ProfileReport(Report):
    """What a profile found: where the trace went, the kernel/op tables, breakdown, busy/idle, step times."""

    trace_path: str
    label: str
    phase: str | None = None           # ttft / tpot / ttlt, or None for a block of code
    engine: str | None = None          # "cuda-graph" / "eager" for phases
    device: str | None = None          # "cuda:0", "cpu"; None: read from the trace
    settings: dict[str, Any] = field(default_factory=dict)
    kernel_table: list[dict] = field(default_factory=list)
    op_table: list[dict] = field(default_factory=list)
    breakdown: list[dict] = field(default_factory=list)
    breakdown_basis: str = ""
    busy_idle: dict[str, Any] | None = None
    launch_gaps: dict[str, Any] | None = None
    steps: list[dict] = field(default_factory=list)
    step_time: dict[str, Any] | None = None
    overhead: dict[str, Any] | None = None
    hta: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _trace: ParsedTrace | None = field(default=None, repr=False)
    _png: bytes | None = field(default=None, repr=False)

    # -- data --
    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_path": self.trace_path, "label": self.label, "phase": self.phase, "engine": self.engine,
            "device": self.device, **self.settings,
            "kernel_table": self.kernel_table, "op_table": self.op_table,
            "breakdown": self.breakdown, "breakdown_basis": self.breakdown_basis,
            "busy_idle": self.busy_idle, "launch_gaps": self.launch_gaps,
            "steps": self.steps, "step_time": self.step_time, "overhead": self.overhead,
            "hta": self.hta, "counts": self.counts, "notes": self.notes,
        }

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return data["kernel_table"] or data["op_table"] or super()._dataframe_rows(data)

    @property
    def trace(self) -> ParsedTrace:
        """The parsed trace (read back from ``trace_path`` when needed)."""
        if self._trace is None:
            self._trace = ParsedTrace.load(self.trace_path)
        return self._trace

    def timeline(self, ax=None, **kwargs):
        """Draw the kernel (or CPU op) timeline; returns the matplotlib Figure."""
        from .timeline import draw_timeline

        return draw_timeline(self.trace, ax=ax, spans=self.steps, **kwargs)

    def timeline_png(self) -> bytes:
        if self._png is None:
            from .timeline import figure_png

            self._png = figure_png(self.timeline())
        return self._png

    # -- views --
    def headline(self) -> list[str]:
        what = f": phase {self.phase}" if self.phase else ""
        s = self.settings
        extra = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.items() if k in ("batch", "prompt_len", "gen_len", "steps"))
        engine = f", engine {self.engine}" if self.engine else ""
        lines = [f"elana profile '{self.label}'{what} on {self.device}{engine}" + (f" ({extra})" if extra else "")]
        lines.append(f"trace: {self.trace_path}")
        lines.append(f"  {PERFETTO_NOTE}")
        c = self.counts
        lines.append(f"events: {c.get('events', 0)} ({c.get('gpu', 0)} GPU kernels/copies, {c.get('cpu_ops', 0)} CPU ops)")
        b = self.busy_idle
        if b and b.get("busy_share") is not None:
            lines.append(f"GPU busy {b['busy_share']:.1%}, idle {b['idle_share']:.1%} of {_t(b['window_us'])} "
                         "(first to last GPU activity)")
        g = self.launch_gaps
        if g and g["gaps"]["n"]:
            gg = g["gaps"]
            lines.append(f"gaps between GPU work: {gg['n']}, median {_t(gg['median_us'])}, p90 {_t(gg['p90_us'])}, "
                         f"max {_t(gg['max_us'])}, total {_t(gg['total_us'])}")
        if g and g["launch_delay"]["n"]:
            d = g["launch_delay"]
            lines.append(f"launch delay (kernel start - launch call): median {_t(d['median_us'])}, p90 {_t(d['p90_us'])}")
        st = self.step_time
        if st:
            if st.get("gpu_mean_us") is not None:
                lines.append(f"decode step from GPU kernels: {_t(st['gpu_mean_us'])} per step over {st['steps']} steps "
                             f"(median period {_t(st['gpu_median_period_us'])}, median busy span {_t(st['gpu_median_span_us'])})")
            else:
                lines.append(f"decode step (CPU annotations): mean {_t(st['cpu_mean_us'])} over {st['steps']} steps")
        o = self.overhead
        if o and o.get("overhead") is not None:
            lines.append(f"profiler overhead: {_t(o['profiled_s'] * 1e6)} with vs {_t(o['unprofiled_s'] * 1e6)} without "
                         f"({o['overhead']:+.1%} wall time)")
        return lines

    def _tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        tables = []
        if self.breakdown:
            tables.append((f"Breakdown by kind ({self.breakdown_basis})", ["kind", "time", "share"],
                           [[r["kind"], _t(r["time_us"]), f"{r['share']:.1%}"] for r in self.breakdown if r["time_us"] > 0]))
        if self.kernel_table:
            tables.append(("Top GPU kernels", ["kernel", "kind", "count", "total", "mean", "GPU share"],
                           [[_short(r["name"]), r["kind"], r["count"], _t(r["total_us"]), _t(r["mean_us"]), f"{r['share']:.1%}"]
                            for r in self.kernel_table]))
        if self.op_table:
            tables.append(("Top CPU ops (by self time)", ["op", "kind", "count", "total", "self", "mean", "self share"],
                           [[_short(r["name"]), r["kind"], r["count"], _t(r["total_us"]), _t(r["self_us"]),
                             _t(r["mean_us"]), f"{r['share']:.1%}"] for r in self.op_table]))
        if self.steps:
            rows = [[r["name"], _t(r["cpu_us"]), _t(r["gpu_span_us"]), _t(r["gpu_busy_us"]), r["kernels"]]
                    for r in self.steps[:_MAX_STEP_ROWS]]
            if len(self.steps) > _MAX_STEP_ROWS:
                rows.append([f"... {len(self.steps) - _MAX_STEP_ROWS} more (report.steps)", "", "", "", ""])
            tables.append(("Annotated phases", ["annotation", "CPU", "GPU span", "GPU busy", "kernels"], rows))
        if self.hta:
            for key, title in (("kernel_type_breakdown", "HTA kernel type breakdown"), ("idle_time", "HTA idle time")):
                rows = self.hta.get(key) or []
                if rows:
                    keys = list(rows[0].keys())
                    header = [f"{k} (µs)" if k in _HTA_MICROSECONDS else k for k in keys]
                    tables.append((title, header, [[_fmt(r[k]) for k in keys] for r in rows]))
        return tables

    def to_text(self) -> str:
        parts = ["\n".join(self.headline())]
        for title, header, rows in self._tables():
            parts.append(f"{title}\n{text_table(header, rows)}")
        if self.notes:
            parts.append("\n".join(f"note: {n}" for n in self.notes))
        return "\n\n".join(parts)

    def _header_html(self) -> str:
        import html

        lines = self.headline()
        body = "<br>".join(html.escape(x) for x in lines[:1])
        path = html.escape(self.trace_path)
        rest = "<br>".join(html.escape(x) for x in lines[3:])
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<div class='elana-profile'><b>{body}</b><br>trace: <code>{path}</code> &mdash; open it in "
                f"<a href='{PERFETTO_URL}' target='_blank'>ui.perfetto.dev</a> (Open trace file; it stays on your machine)"
                f"<br>{rest}{'<ul>' + notes + '</ul>' if notes else ''}</div>")

    def to_html(self) -> str:
        import base64

        parts = [self._header_html()]
        try:
            png = base64.b64encode(self.timeline_png()).decode("ascii")
            parts.append(f"<img src='data:image/png;base64,{png}'/>")
        except ImportError:  # matplotlib missing: tables only
            pass
        parts += [html_table(h, r, caption=t) for t, h, r in self._tables()]
        return "\n".join(parts)

    def widget(self):
        """The notebook view: header, the zoomable timeline, and the tables in tabs."""
        import ipywidgets as widgets

        from .timeline import timeline_widget

        tables = self._tables()
        tabs = widgets.Tab(children=[widgets.HTML(html_table(h, r)) for _, h, r in tables])
        for i, (title, _, _) in enumerate(tables):
            tabs.set_title(i, title)
        return widgets.VBox([widgets.HTML(self._header_html()), timeline_widget(self.trace, spans=self.steps), tabs])


_MAX_STEP_ROWS = 12
_HTA_MICROSECONDS = {"sum", "idle_time", "max", "min", "mean", "std"}


def _t(us: float | None) -> str:
    return format_time(None if us is None else us * 1e-6)


def _short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else _short(str(v), 50)


# -- analysis entry point ------------------------------------------------------------------------------

def analyze_trace(path: str, label: str | None = None, top: int = 15, hta: bool | None = None,
                  trace: ParsedTrace | None = None, **fields: Any) -> ProfileReport:
    """A ProfileReport for a Chrome trace file written by torch.profiler (ours or anyone's)."""
    trace = trace or ParsedTrace.load(path)
    self_us = op_self_times(trace.cpu_ops)
    if trace.on_gpu:
        dev = trace.columns("device")
        kinds_time = breakdown(dev.kind_ids(), dev.dur)
        basis = "GPU kernel time"
    else:
        kinds_time = breakdown(trace.columns("cpu_ops").kind_ids(), self_us)
        basis = "CPU op self time"
    spans = annotation_spans(trace)
    notes = list(fields.pop("notes", []))
    if trace.on_gpu:
        note = graph_visibility_note(trace)
        if note:
            notes.append(note)
    elif str(fields.get("device") or "").startswith("cuda"):
        notes.append("the profiler recorded no GPU kernels although the work ran on CUDA (is CUPTI in use by "
                     "another tool?): the tables and timeline show CPU operators")
    else:
        notes.append("no GPU activity in this trace: the tables and timeline show CPU operators")
    report = ProfileReport(
        trace_path=path, label=label or os.path.basename(path).split(".")[0],
        kernel_table=kernel_table(trace, top), op_table=op_table(trace, top, self_us),
        breakdown=kinds_time, breakdown_basis=basis,
        busy_idle=busy_idle(trace) if trace.on_gpu else None,
        launch_gaps=launch_gaps(trace) if trace.on_gpu else None,
        steps=spans, step_time=decode_step_time(spans),
        counts={"events": trace.n_events, "gpu": len(trace.device), "cpu_ops": len(trace.cpu_ops),
                "annotations": len(trace.annotations)},
        notes=notes, _trace=trace, **fields)
    if report.device is None:
        report.device = "cuda" if trace.on_gpu else "cpu"
    if hta is None:
        hta = trace.on_gpu and hta_available()
    if hta:
        try:
            report.hta = hta_analysis(path, top=min(top, 10))
        except ImportError:
            report.notes.append("HolisticTraceAnalysis is not installed (pip install HolisticTraceAnalysis): our tables only")
        except Exception as exc:  # noqa: BLE001 - an optional extra must not sink the report
            report.notes.append(f"HolisticTraceAnalysis could not analyse this trace ({type(exc).__name__}: {_first_line(exc)})")
    return report


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


# -- profiling any code --------------------------------------------------------------------------------

class ProfileCapture:
    """The handle ``profile_block`` yields; ``report`` is set after the block ends without error."""

    def __init__(self, label: str, path: str):
        self.label = label
        self.path = path
        self.report: ProfileReport | None = None

    def step(self, name: str):
        """An extra annotation inside the block (``with prof.step("decode_step[0]"): ...``)."""
        from torch.profiler import record_function

        return record_function(ANNOTATION_PREFIX + name)


@contextlib.contextmanager
def profile_block(out: str | None = None, label: str | None = None, gzip: bool = False, top: int = 15,
                  cuda: bool | None = None, hta: bool | None = None) -> Iterator[ProfileCapture]:
    """Profile the code inside the ``with`` block; the trace goes to ``out`` (default ``elana_traces/<label>/``).

    ``with profile_block(label="my-cell") as prof: model(x)`` then ``prof.report``.
    """
    from torch.profiler import record_function

    label = safe_label(label or "block")
    folder = trace_folder(out, label)
    handle = ProfileCapture(label, new_trace_path(folder, label, gzip))
    with capture(cuda) as prof:
        with record_function(f"{ANNOTATION_PREFIX}{label}"):
            yield handle
    path = export_trace(prof, handle.path)
    device = "cuda" if any(a.name == "CUDA" for a in _activities(cuda)) else "cpu"
    handle.report = analyze_trace(path, label=label, top=top, hta=hta, device=device)


# -- profiling a phase ---------------------------------------------------------------------------------

def _run_phase(session, phase: str, steps: int, annotate: bool) -> None:
    """The work that is profiled: ``steps`` prefills (ttft), decode steps (tpot) or requests (ttlt)."""
    from torch.profiler import record_function

    def mark(name: str):
        return record_function(ANNOTATION_PREFIX + name) if annotate else contextlib.nullcontext()

    if phase == "ttft":
        for i in range(steps):
            with mark(f"prefill[{i}]"):
                session.prefill()
    elif phase == "tpot":
        for i in range(steps):
            with mark(f"decode_step[{i}]"):
                session.decode_step()
    else:
        for r in range(steps):
            with mark(f"request[{r}]"):
                with mark("prefill"):
                    session.prefill()
                for i in range(session.gen_len - 1):
                    with mark(f"decode_step[{i}]"):
                        session.decode_step()


def _timed(session, phase: str, steps: int, fn: Callable[[], None]) -> float:
    """Wall seconds of ``fn`` with the device synchronized at both edges (a tpot run starts after a prefill)."""
    if phase == "tpot":
        session.prefill()
    session.synchronize()
    t0 = time.perf_counter()
    fn()
    session.synchronize()
    return time.perf_counter() - t0


def check_phase_args(phase: str, steps: int | None, gen_len: int) -> int:
    if phase not in PHASES:
        raise ProfileError(f"unknown phase {phase!r}: use one of {', '.join(PHASES)}")
    if steps is None:
        steps = max(1, min(DEFAULT_STEPS["tpot"], gen_len - 1)) if phase == "tpot" else DEFAULT_STEPS[phase]
    if steps <= 0:
        raise ProfileError(f"--steps must be a positive integer, got {steps}")
    if phase == "tpot" and steps > gen_len - 1:
        raise ProfileError(f"{steps} decode steps need --gen-len of at least {steps + 1} (got {gen_len})")
    return steps


def profile_phase(model, phase: str = "tpot", batch: int = 1, prompt_len: int = 512, gen_len: int = 128,
                  steps: int | None = None, out: str | None = None, label: str | None = None,
                  gzip: bool = False, cuda_graph: bool | None = None, top: int = 15,
                  hta: bool | None = None, graph_warmup: bool | None = None) -> ProfileReport:
    """Profile one phase of ``model`` with the runners of ``%elana_latency``.

    ``steps``: prefills for ttft (default 3), decode steps for tpot (default 16, at most gen_len-1),
    whole requests for ttlt (default 1). The phase runs once unprofiled (warm-up and the overhead
    baseline), then once under the profiler. The model's state is restored afterwards.
    ``graph_warmup``: start CUPTI before the CUDA graph is captured (None: only where CUDA < 12.6 needs it).
    """
    from .phases import GenerationSession

    steps = check_phase_args(phase, steps, gen_len)
    label = safe_label(label or f"{type(model).__name__}-{phase}")
    folder = trace_folder(out, label)
    check_can_profile()
    if graph_warmup is None:
        graph_warmup = cuda_graph_warmup_needed()
    if graph_warmup and not prepare_cuda_graph_visibility():
        graph_warmup = False
    session = GenerationSession(model, batch=batch, prompt_len=prompt_len, gen_len=gen_len, cuda_graph=cuda_graph)
    with session:
        notes = [session.note] if session.note else []
        # warm-up: one prefill and a few decode steps, then the same work as the capture, unprofiled
        session.prefill()
        for _ in range(min(2, session.steps_left)):
            session.decode_step()
        unprofiled = _timed(session, phase, steps, lambda: _run_phase(session, phase, steps, annotate=False))
        if phase == "tpot":
            session.prefill()
            session.synchronize()
        path = new_trace_path(folder, label, gzip)
        with capture(cuda=session.device.type == "cuda") as prof:
            t0 = time.perf_counter()
            _run_phase(session, phase, steps, annotate=True)
            session.synchronize()
            profiled = time.perf_counter() - t0
        engine, device = session.engine, str(session.device)
    path = export_trace(prof, path)
    overhead = {"unprofiled_s": unprofiled, "profiled_s": profiled,
                "overhead": profiled / unprofiled - 1 if unprofiled > 0 else None,
                "basis": "wall time of the same work, synchronized, without and with the profiler"}
    settings = {"batch": session.batch, "prompt_len": session.prompt_len, "gen_len": session.gen_len, "steps": steps}
    return analyze_trace(path, label=label, top=top, hta=hta, phase=phase, engine=engine, device=device,
                         settings=settings, overhead=overhead, notes=notes)
