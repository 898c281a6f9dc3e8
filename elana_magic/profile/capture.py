"""Kernel-level profiles: capture with torch.profiler, write a Chrome trace for Perfetto, report on it.

* ``profile_block(out, label)``: a context manager around any code; ``prof.report`` afterwards.
* ``profile_phase(model, phase, ...)``: TTFT / TPOT / TTLT through ``latency.session.GenerationSession`` (the same
  runners as ``%elana_latency``), warmed up and timed once without the profiler, then captured with one
  annotation per phase and per decode step (``elana:prefill[0]``, ``elana:decode_step[3]``, ...).

The report is built by ``analyze.analyze_trace`` from the trace file that was written (not the profiler's
in-memory events), so what the report says is what Perfetto shows. Timestamps in traces are microseconds.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import time
import warnings
from typing import Any, Callable, Iterator

from ..core import defaults
from ..core.errors import ElanaError
from .analyze import analyze_trace
from .report import ProfileReport
from .trace import ANNOTATION_PREFIX

DEFAULT_OUT = "elana_traces"
PHASES = ("ttft", "tpot", "ttlt")
DEFAULT_STEPS = defaults.PROFILE_STEPS


class ProfileError(ElanaError, ValueError):
    """Bad input or a failed capture, in one line (the magic shows it as a UsageError)."""


class ProfileInterrupted(KeyboardInterrupt):
    """Ctrl-C after the trace was written in full: the trace is kept at ``path`` (a valid file)."""

    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


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
        for index in range(torch.cuda.device_count()):  # a block may run on any of them (device_map)
            torch.cuda.synchronize(index)


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
        without_usdt_lines(prof.start)
    try:
        yield prof
        _synchronize()
    finally:
        without_usdt_lines(prof.stop)  # also on errors and Ctrl-C: a profiler is never left running


def without_usdt_lines(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with the process's stderr (fd 2) captured, and pass on every line but Kineto's
    ``USDT: ... profiler_start/profiler_stop`` trace points (written by C++, below Python's sys.stderr)."""
    import sys
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreters)
        return fn()
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            return fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = [ln for ln in tmp.read().decode(errors="replace").splitlines(keepends=True)
                    if not ln.startswith("USDT:")]
            if rest:
                sys.stderr.write("".join(rest))


_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/ +=,@%:-]*")


def export_trace(prof, path: str) -> str:
    """Write the Chrome trace (gzipped when ``path`` ends in .gz) as valid JSON whatever ``path`` holds.

    torch writes the file's own path unescaped into ``traceName``, so it exports to a temporary file
    with a plain name (in the target folder when the folder's path is plain, else in the system's
    temporary folder), sets ``traceName`` to ``path`` JSON-escaped, then moves the file into place.
    Nothing is left behind on failure or Ctrl-C; a write failure is a ProfileError naming ``path``.
    """
    import tempfile

    folder = os.path.dirname(path) or "."
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".elana-trace-", suffix=".json",
                                   dir=folder if _PLAIN_PATH.fullmatch(os.path.abspath(folder)) else None)
        os.close(fd)
        prof.export_chrome_trace(tmp)
        _retitle(tmp, path)
        if path.endswith(".gz"):
            _gzip_into(tmp, path)
        else:
            _move_into(tmp, path)
    except Exception as exc:  # noqa: BLE001 - kineto raises RuntimeError as well as OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise ProfileError(f"could not write the trace to {path!r}: {reason}; pick another --out") from None
    finally:
        if tmp is not None:  # already moved into place, or left from a failure or Ctrl-C
            _remove_quietly(tmp)
    return path


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _retitle(tmp: str, path: str, tail: int = 1 << 16) -> None:
    """Replace ``"traceName": "<tmp>"`` near the end of the file by the final path, JSON-escaped."""
    import json

    old = b'"traceName": ' + json.dumps(tmp).encode()
    new = b'"traceName": ' + json.dumps(os.path.abspath(path)).encode()
    with open(tmp, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - tail)
        f.seek(start)
        end = f.read()
        at = end.rfind(old)
        if at < 0:  # another layout: the temporary name is plain, so the file is valid JSON as it is
            return
        f.seek(start + at)
        f.write(new + end[at + len(old):])
        f.truncate()


def _move_into(tmp: str, path: str) -> None:
    import shutil

    if os.path.dirname(os.path.abspath(tmp)) == os.path.dirname(os.path.abspath(path)):
        os.replace(tmp, path)
        return
    part = _partial_name(path)
    try:
        shutil.copyfile(tmp, part)
        os.replace(part, path)
    except BaseException:
        _remove_quietly(part)
        raise
    _remove_quietly(tmp)


def _gzip_into(tmp: str, path: str) -> None:
    import gzip
    import shutil

    part = _partial_name(path)
    try:
        with open(tmp, "rb") as fin, gzip.open(part, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(part, path)
    except BaseException:
        _remove_quietly(part)
        raise


def _partial_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.part")


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def read_back(path: str, **kwargs) -> ProfileReport:
    """``analyze_trace`` of a trace just written; Ctrl-C keeps the file (ProfileInterrupted names it),
    a file that cannot be read is a ProfileError naming it."""
    try:
        return analyze_trace(path, **kwargs)
    except KeyboardInterrupt:
        raise ProfileInterrupted(path) from None
    except ProfileError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ProfileError(f"the trace was written to {path!r} but could not be read back ({_first_line(exc)})") from None


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
def profile_block(out: str | None = None, label: str | None = None, gzip: bool = False,
                  top: int = defaults.PROFILE_TOP,
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
    from ..core.environment import capture_environment

    handle.report = read_back(path, label=label, top=top, hta=hta, device=device).stamp(
        settings={"out": out, "label": label, "gzip": gzip, "top": top, "cuda": cuda, "hta": hta},
        environment=capture_environment(device))


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


def profile_phase(model, phase: str = defaults.PROFILE_PHASE, batch: int = defaults.BATCH,
                  prompt_len: int = defaults.PROMPT_LEN, gen_len: int = defaults.GEN_LEN,
                  steps: int | None = None, out: str | None = None, label: str | None = None,
                  gzip: bool = False, cuda_graph: bool | None = None, top: int = defaults.PROFILE_TOP,
                  hta: bool | None = None, graph_warmup: bool | None = None) -> ProfileReport:
    """Profile one phase of ``model`` with the runners of ``%elana_latency``.

    ``steps``: prefills for ttft (default 3), decode steps for tpot (default 16, at most gen_len-1),
    whole requests for ttlt (default 1). The phase runs once unprofiled (warm-up and the overhead
    baseline), then once under the profiler. The model's state is restored afterwards.
    ``graph_warmup``: start CUPTI before the CUDA graph is captured (None: only where CUDA < 12.6 needs it).
    """
    from ..latency.errors import GenerationOutOfMemory
    from ..latency.inputs import is_out_of_memory, out_of_memory_message
    from ..latency.session import GenerationSession

    steps = check_phase_args(phase, steps, gen_len)
    label = safe_label(label or f"{type(model).__name__}-{phase}")
    folder = trace_folder(out, label)
    check_can_profile()
    if graph_warmup is None:
        graph_warmup = cuda_graph_warmup_needed()
    if graph_warmup and not prepare_cuda_graph_visibility():
        graph_warmup = False
    session = GenerationSession(model, batch=batch, prompt_len=prompt_len, gen_len=gen_len, cuda_graph=cuda_graph)
    out_of_memory = False
    try:
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
    except RuntimeError as exc:  # torch.OutOfMemoryError too
        if not is_out_of_memory(exc):
            raise
        out_of_memory = True  # raised below, once the traceback (and the tensors its frames hold) is gone
    if out_of_memory:
        if session.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
        raise GenerationOutOfMemory(out_of_memory_message(session.batch, session.prompt_len, session.gen_len,
                                                          session.device))
    path = export_trace(prof, path)
    overhead = {"unprofiled_s": unprofiled, "profiled_s": profiled,
                "overhead": profiled / unprofiled - 1 if unprofiled > 0 else None,
                "basis": "wall time of the same work, synchronized, without and with the profiler"}
    settings = {"batch": session.batch, "prompt_len": session.prompt_len, "gen_len": session.gen_len, "steps": steps}
    from ..core.environment import capture_environment

    report = read_back(path, label=label, top=top, hta=hta, phase=phase, engine=engine, device=device,
                       settings=settings, overhead=overhead, notes=notes)
    return report.stamp(settings={"phase": phase, **settings, "out": out, "label": label, "gzip": gzip,
                                  "cuda_graph": cuda_graph, "top": top, "hta": hta},
                        model=model, environment=capture_environment(device))
