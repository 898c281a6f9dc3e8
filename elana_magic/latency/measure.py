"""TTFT, TPOT and TTLT of the model as loaded, with the energy of each phase and its roofline context.

Each phase is repeated (after a warm-up) inside one energy window until a minimum count and time are
met, or earlier once the median's 95% interval is within 1%; with energy on, a window also lasts at
least ``energy_window_s`` so that it spans many ticks of the board's energy counter.

* TTFT: one prefill on a fresh cache (logits of the last position only), per iteration.
* TPOT: after one prefill, passes of ``gen_len - 1`` greedy decode steps over the real, growing
  positions (each pass rewinds to the prompt), every step timed (CUDA events on GPU). Energy / steps
  = J per decode step (one token per sequence).
* TTLT: prefill + ``gen_len - 1`` decode steps with the same engine, timed whole and split; the
  request's energy is split into prefill and decode from the power timeline.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Sequence

import torch

from .devices import cuda_indices, peak_memory, reset_peak_memory
from .devices import synchronize as synchronize_devices
from .session import (GenerationInputError, GenerationOutOfMemory, GenerationSession, is_out_of_memory,
                      model_device, out_of_memory_message)
from .memory import MemoryProbe, phase_entry, remember_peaks
from .report import LatencyReport, _ms
from ..core import defaults
from ..core.display import in_widget_frontend
from ..core.stats import StoppingRule, summarize
from ..core.threads import cpu_threads

PHASES = ("ttft", "tpot", "ttlt")
DEFAULT_WARMUP = defaults.WARMUP
DEFAULT_REPEATS = defaults.REPEATS
DEFAULT_MIN_TIME = defaults.MIN_TIME_S
DEFAULT_ENERGY_WINDOW_S = 3.0


# -- clocks ----------------------------------------------------------------------------------------
class _Clock:
    """Marks on the devices' timelines: CUDA events on every GPU the model occupies, perf_counter on CPU.

    A mark records one event per GPU; the time of a mark is when the *last* GPU reached it (each GPU's
    event timed from its own start event, recorded right after a synchronize of all of them), so a
    forward split over several GPUs (device_map) ends when its last GPU's work ends. ``host(mark)``
    maps a mark to perf_counter seconds (anchored at ``start()``), so phase edges line up with the
    energy sampler's timeline."""

    def __init__(self, devices: list[torch.device]):
        self.devices = list(devices)
        self.indices = cuda_indices(self.devices)
        self.cuda = bool(self.indices)
        self._pool: list[tuple[Any, ...]] = []
        self._used = 0
        self._base_t = 0.0
        self._base = None

    def start(self) -> Any:
        """Synchronize every device, anchor host time, and return the first mark of an iteration."""
        self.sync()
        self._used = 0
        self._base_t = time.perf_counter()
        self._base = self.mark()
        return self._base

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        if self._used == len(self._pool):
            self._pool.append(tuple(torch.cuda.Event(enable_timing=True) for _ in self.indices))
        events = self._pool[self._used]
        self._used += 1
        for index, ev in zip(self.indices, events):
            ev.record(torch.cuda.current_stream(index))
        return events

    def sync(self) -> None:
        synchronize_devices(self.devices)

    def _since_base(self, m: Any) -> float:
        return max(b.elapsed_time(e) for b, e in zip(self._base, m)) / 1e3

    def seconds(self, a: Any, b: Any) -> float:
        if not self.cuda:
            return b - a
        if len(self.indices) == 1:
            return a[0].elapsed_time(b[0]) / 1e3
        return self._since_base(b) - self._since_base(a)

    def host(self, m: Any) -> float:
        return self._base_t + (self._since_base(m) if self.cuda else m - self._base)


# -- repetition ------------------------------------------------------------------------------------
def _progress(desc: str, progress: Any, window: Any = None):
    """What counts the repetitions: the live view (notebook), a terminal tqdm bar, or nothing."""
    if hasattr(progress, "phase"):  # a LiveView
        return progress.phase(desc.removeprefix("elana "), power=getattr(window, "power_so_far", None))
    if not progress:
        return None
    try:
        from tqdm import tqdm  # the terminal bar; in a notebook the magic passes a LiveView instead
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(desc=desc, unit="run", delay=2.0, leave=False)


def _repeat(name: str, run_once: Callable[[], dict], rule: StoppingRule, key: str, warmup: int,
            meter, progress: bool) -> tuple[list[dict], Any]:
    """Warm up, then run ``run_once`` inside one energy window until ``rule`` says done."""
    if hasattr(progress, "phase"):
        progress.phase(f"{name} warm-up")
    for _ in range(warmup):
        run_once()
    results: list[dict] = []
    pooled: list[float] = []
    window = meter.window(label=name) if meter is not None else contextlib.nullcontext()
    bar = None
    try:
        with window as win:
            bar = _progress(f"elana {name}", progress, win)
            t0 = time.perf_counter()
            while True:
                res = run_once()
                results.append(res)
                pooled.extend(res[key])
                if bar is not None:
                    bar.update(1)
                if rule.done(len(results), time.perf_counter() - t0, pooled):
                    break
    finally:
        if bar is not None:
            bar.close()
    return results, (win.report if meter is not None else None)


# -- measurement -----------------------------------------------------------------------------------
def _prompt_ids(tokenizer, prompt: str, batch: int) -> torch.Tensor:
    if tokenizer is None:
        raise GenerationInputError("a text prompt needs a tokenizer: pass --tokenizer TOK (or tokenizer=...)")
    if not callable(tokenizer):
        raise GenerationInputError(f"the tokenizer is a {type(tokenizer).__name__}, which cannot encode text")
    try:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        ids = torch.as_tensor(ids)
    except Exception as exc:  # noqa: BLE001 - any callable may be passed as a tokenizer
        raise GenerationInputError(
            f"the tokenizer did not return token ids for the prompt ({type(exc).__name__}: {exc}): pass a "
            "tokenizer that returns {'input_ids': ...} when called with return_tensors='pt'") from None
    if ids.dtype.is_floating_point or ids.is_complex() or ids.dtype == torch.bool or ids.ndim not in (1, 2):
        raise GenerationInputError(f"the tokenizer returned {ids.dtype} input_ids of shape {tuple(ids.shape)}, "
                                   "not integer token ids: pass a transformers tokenizer")
    if ids.ndim == 1:
        ids = ids.unsqueeze(0)
    if ids.numel() == 0:
        raise GenerationInputError("the prompt encodes to zero tokens: give some text")
    return ids[:1].expand(batch, -1)


def _open_meter(energy: bool | None, devices: list[torch.device], notes: list[str]):
    """An EnergyMeter on every GPU the model occupies, or None (with the reason in ``notes``)."""
    if energy is False:
        return None, "energy off (--no-energy)"
    try:
        from ..energy import EnergyMeter
    except ImportError as exc:
        reason = f"energy unavailable: elana_magic.energy cannot be imported ({exc})"
        return None, reason
    try:
        meter = EnergyMeter(devices=cuda_indices(devices) or None)
    except Exception as exc:  # noqa: BLE001 - no sensor is a note, not a failure
        return None, f"energy unavailable: {exc}"
    if not meter.available:
        reason = meter.reason or "no energy sensor"
        meter.close()
        return None, f"energy unavailable: {reason}"
    return meter, None


def _uncovered(meter, devices: list[torch.device]) -> list[int]:
    """The model's GPUs that a meter given by the caller does not measure."""
    measured = getattr(meter, "cuda_indices", None)
    if measured is None:
        return []
    return [i for i in cuda_indices(devices) if i not in measured]


def _energy_values(rep) -> dict[str, Any] | None:
    if rep is None or rep.energy_j is None:
        return None
    return {"energy_j": rep.energy_j, "net_energy_j": rep.net_energy_j, "duration_s": rep.duration_s,
            "avg_power_w": rep.avg_power_w, "uncertainty_j": getattr(rep, "uncertainty_j", None)}


def _decodes(phases: Sequence[str]) -> bool:
    """Compiling the decode step pays off only where decode steps are timed."""
    return "tpot" in phases or "ttlt" in phases


def _is_grid(*values) -> bool:
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for v in values)


def _one(name: str, value):
    """A single value given as itself or a one-element list."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise GenerationInputError(f"{name} needs one value here, got {list(value)}")
        return value[0]
    return value


def check_options(phases: Sequence[str] | None, warmup: Any, repeats: Any, min_time: Any,
                  gen_len: Any) -> tuple[str, ...]:
    """The phases, normalized; GenerationInputError (one line) for options no measurement can take."""
    phases = tuple(dict.fromkeys(p.lower() for p in (phases or PHASES)))
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise GenerationInputError(f"unknown phase {unknown[0]!r}: choose from ttft, tpot, ttlt")
    if not isinstance(warmup, int) or warmup < 0:
        raise GenerationInputError(f"warmup must be a non-negative integer, got {warmup!r}")
    if not isinstance(repeats, int) or repeats <= 0:
        raise GenerationInputError(f"repeats must be a positive integer, got {repeats!r}")
    if not (0 <= min_time < float("inf")):
        raise GenerationInputError(f"min time must be a finite number of seconds >= 0, got {min_time!r}")
    if "tpot" in phases and isinstance(gen_len, int) and gen_len < 2:
        raise GenerationInputError("TPOT needs at least 2 generated tokens: raise --gen-len")
    return phases


def measure_latency(model: torch.nn.Module, tokenizer: Any = None, phases: Sequence[str] = PHASES,
                    batch: int | Sequence[int] = defaults.BATCH, prompt_len: int | Sequence[int] = defaults.PROMPT_LEN,
                    gen_len: int | Sequence[int] = defaults.GEN_LEN, energy: bool | None = None,
                    cuda_graph: bool | None = None, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
                    min_time: float = DEFAULT_MIN_TIME, label: str | None = None, prompt: str | None = None,
                    peak_bw: float | None = None, peak_flops: float | None = None,
                    energy_window_s: float | None = None, max_time: float | None = None,
                    rel_ci: float = 0.01, progress: Any = True, seed: int = 0, meter=None,
                    compile: bool | str | None = None, ngpus: int | None = None, shared_runs: bool = True,
                    memory: bool = True):
    """Measure TTFT / TPOT / TTLT (any subset of ``phases``) of ``model`` as loaded; see the module doc.

    ``energy``: None = on when a sensor exists. ``compile``: None = the CUDA-graph engine captures an
    Inductor-compiled decode step (compiled once per model and shape; a note says so); True/"regional" = one
    compiled decoder block shared by every layer (the default), "whole" = the whole forward compiled, False = none. ``meter``: an open ``EnergyMeter`` to reuse (its idle power
    is then measured once across calls); it is left open. ``progress``: True = a tqdm bar in a terminal,
    a live view in a notebook (cleared at the end); a ``core.live.LiveView`` to report into; False = none.

    A model spread over several GPUs (``device_map``) is timed, synchronized and metered on every GPU
    it occupies (``devices``, ``energy["per_device"]``, ``peak_memory``). ``ngpus=N`` (N > 1) runs N
    replicas instead, one per GPU (gloo processes on CPU) through torchrun, the batch split across
    them: see ``replicas.measure_replicas``; ``model`` may then also be a model folder, and the result is
    a ``ReplicaLatencyReport``.

    ``batch``, ``prompt_len``, ``gen_len``: a value each, or lists of values: then every cell of the grid is
    measured and a ``LatencyGridReport`` returned (``grid.measure_grid``). ``energy_window_s`` (default
    ``DEFAULT_ENERGY_WINDOW_S``): a phase's energy window lasts at least this long. ``shared_runs``: without
    energy windows, one loop of requests serves every phase (each request's prefill is a TTFT sample and its
    steps TPOT samples); False = each phase runs on its own, as before. ``memory``: measure each phase's
    peak memory beside the analytic size (``memory``)."""
    if _is_grid(batch, prompt_len, gen_len):
        from .grid import measure_grid

        return measure_grid(model, tokenizer=tokenizer, phases=phases, batch=batch, prompt_len=prompt_len,
                            gen_len=gen_len, energy=energy, cuda_graph=cuda_graph, warmup=warmup, repeats=repeats,
                            min_time=min_time, label=label, prompt=prompt, peak_bw=peak_bw, peak_flops=peak_flops,
                            energy_window_s=energy_window_s, max_time=max_time, rel_ci=rel_ci, progress=progress,
                            seed=seed, meter=meter, compile=compile, ngpus=ngpus, shared_runs=shared_runs,
                            memory=memory)
    batch, prompt_len, gen_len = _one("batch", batch), _one("prompt length", prompt_len), _one("gen length", gen_len)
    if energy_window_s is None:
        energy_window_s = DEFAULT_ENERGY_WINDOW_S
    phases = check_options(phases, warmup, repeats, min_time, gen_len)
    if ngpus is not None and ngpus != 1:
        from .replicas import measure_replicas

        if meter is not None:
            raise GenerationInputError("ngpus: each replica opens its own energy meter; do not pass meter=")
        return measure_replicas(model, ngpus, tokenizer=tokenizer, phases=phases, batch=batch,
                                prompt_len=prompt_len, gen_len=gen_len, energy=energy, cuda_graph=cuda_graph,
                                warmup=warmup, repeats=repeats, min_time=min_time, label=label, prompt=prompt,
                                peak_bw=peak_bw, peak_flops=peak_flops, energy_window_s=energy_window_s,
                                max_time=max_time, rel_ci=rel_ci, seed=seed, compile=compile,
                                progress=progress)
    own_live = None
    if progress is True and in_widget_frontend():  # a notebook: the live view, not a tqdm widget
        from ..core.live import LiveView

        progress = own_live = LiveView("elana latency").start()
    run = _Measurement(model, tokenizer=tokenizer, phases=phases, batch=batch, prompt_len=prompt_len,
                       gen_len=gen_len, energy=energy, cuda_graph=cuda_graph, warmup=warmup, repeats=repeats,
                       min_time=min_time, label=label, prompt=prompt, peak_bw=peak_bw, peak_flops=peak_flops,
                       energy_window_s=energy_window_s, max_time=max_time, rel_ci=rel_ci, progress=progress,
                       seed=seed, meter=meter, compile=compile, shared_runs=shared_runs, memory=memory)
    try:
        with cpu_threads(run.device), run:   # threads chosen from the free cores (core.threads)
            run.run_round()
    finally:
        if own_live is not None:
            own_live.clear()
    return run.report()


class _Measurement:
    """One model's latency measurement, run in one or more rounds (a paired A/B alternates rounds
    across models, each model keeping its session open); ``report()`` pools every round."""

    def __init__(self, model: torch.nn.Module, *, tokenizer=None, phases=PHASES, batch=1, prompt_len=512,
                 gen_len=128, energy=None, cuda_graph=None, warmup=DEFAULT_WARMUP, repeats=DEFAULT_REPEATS,
                 min_time=DEFAULT_MIN_TIME, label=None, prompt=None, peak_bw=None, peak_flops=None,
                 energy_window_s=DEFAULT_ENERGY_WINDOW_S, max_time=None, rel_ci=0.01, progress=True, seed=0,
                 meter=None, compile=None, shared_runs=True, memory=True):
        self.phases = check_options(phases, warmup, repeats, min_time, gen_len)
        self.settings = {"phases": list(self.phases), "batch": batch, "prompt_len": prompt_len, "gen_len": gen_len,
                         "energy": energy, "cuda_graph": cuda_graph, "warmup": warmup, "repeats": repeats,
                         "min_time": min_time, "label": label, "prompt": prompt, "peak_bw": peak_bw,
                         "peak_flops": peak_flops, "energy_window_s": energy_window_s, "max_time": max_time,
                         "rel_ci": rel_ci, "seed": seed, "compile": compile}
        self.notes: list[str] = []
        input_ids = None
        if prompt is not None:
            input_ids = _prompt_ids(tokenizer, prompt, batch)
            if prompt_len != input_ids.shape[1]:
                prompt_len = int(input_ids.shape[1])
                self.notes.append(f"prompt length {prompt_len} follows the prompt text")
        self.model, self.batch, self.prompt_len, self.gen_len = model, batch, prompt_len, gen_len
        self.warmup, self.repeats, self.min_time, self.max_time = warmup, repeats, min_time, max_time
        self.rel_ci, self.progress, self.label = rel_ci, progress, label
        self.peak_bw, self.peak_flops, self.energy_window_s = peak_bw, peak_flops, energy_window_s
        self.session = GenerationSession(model, batch=batch, prompt_len=prompt_len, gen_len=gen_len,
                                         cuda_graph=cuda_graph, input_ids=input_ids, seed=seed,
                                         compile=_decodes(self.phases) if compile is None else compile)
        self.device, self.devices = self.session.device, self.session.devices
        self.own_meter = meter is None or energy is False
        if self.own_meter:
            self.meter, self.why_no_energy = _open_meter(energy, self.devices, self.notes)
        else:
            self.why_no_energy = None if meter.available else f"energy unavailable: {meter.reason}"
            self.meter = meter if meter.available else None
            missing = _uncovered(self.meter, self.devices) if self.meter is not None else []
            if missing:
                self.notes.append(f"the meter passed in does not measure GPU(s) {missing} of the model: their "
                                  "energy is not counted")
        if self.why_no_energy and energy is not False:
            self.notes.append(self.why_no_energy)
        self.results: dict[str, list[tuple[list[dict], Any]]] = {}
        self.stops: dict[str, str] = {}
        self.peaks: dict[str, dict[str, int]] = {}
        self.rounds = 0
        self.environment = None
        self._oom = False
        self.shared = shared_runs and self.meter is None and len(self.phases) > 1 and gen_len > 1
        self.probe = MemoryProbe(self.device) if memory else None
        self.parts: dict[str, dict] = {}   # the memory probe's peak per part: prefill, decode, request
        self.compile_info, self.static_cache = None, False
        self.t_start = time.perf_counter()

    def __enter__(self) -> "_Measurement":
        from ..core.environment import capture_environment

        try:
            self.session.__enter__()
        except BaseException:
            self._close_meter()
            raise
        s = self.session
        if s.note:
            self.notes.append(s.note)
        if s.compile_s is not None and s.compile_s > 2.0 and (s.compile_info or {}).get("variant") == "new":
            self.notes.append(f"decode step compiled in {s.compile_s:.0f} s, before and apart from the measurement"
                              " (later runs of this shape on this model reuse it)")
        self.clock = _Clock(self.devices)
        self.environment = capture_environment(self.device)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from ..core.environment import finish_environment

        try:
            self.engine, self.max_diff, self.rel_err = self.session.engine, self.session.max_abs_diff, self.session.rel_err
            self.compile_info, self.static_cache = self.session.compile_info, self.session._graph is not None
            self.session.__exit__(exc_type, exc, tb)
        finally:
            self._close_meter()
            if self.probe is not None:
                self.probe.close()
        if exc is not None and isinstance(exc, RuntimeError) and is_out_of_memory(exc):
            self._oom = True
            return True  # raised from report(), once the traceback (and the tensors its frames hold) is gone
        finish_environment(self.environment, self.device)
        return False

    def _close_meter(self) -> None:
        if self.meter is not None and self.own_meter:
            self.meter.close()
            self.meter = None

    def _rule(self) -> StoppingRule:
        floor_time = self.energy_window_s if self.meter is not None else 0.0
        return StoppingRule(min_count=self.repeats, min_time=self.min_time, rel_ci=self.rel_ci,
                            floor_time=floor_time, max_time=self.max_time)

    def run_round(self) -> None:
        """Warm up and measure every phase once more (samples and energy windows add up over rounds)."""
        if self.shared:
            return self._shared_round()
        s, clock, gen_len = self.session, self.clock, self.gen_len
        runs: dict[str, tuple[Callable[[], dict], int]] = {}
        if "ttft" in self.phases:
            def ttft_once() -> dict:
                a = clock.start()
                s.prefill()
                b = clock.mark()
                clock.sync()
                return {"t": [clock.seconds(a, b)]}

            runs["ttft"] = (ttft_once, self.warmup)
        if "tpot" in self.phases:
            def tpot_once() -> dict:
                s.restart_decode()
                marks = [clock.start()]
                for _ in range(gen_len - 1):
                    s.decode_step()
                    marks.append(clock.mark())
                clock.sync()
                return {"t": [clock.seconds(a, b) for a, b in zip(marks, marks[1:])]}

            runs["tpot"] = (tpot_once, max(1, self.warmup))
        if "ttlt" in self.phases:
            def ttlt_once() -> dict:
                a = clock.start()
                s.prefill()
                b = clock.mark()
                for _ in range(gen_len - 1):
                    s.decode_step()
                c = clock.mark()
                clock.sync()
                return {"t": [clock.seconds(a, c)], "prefill": clock.seconds(a, b), "decode_steps": gen_len - 1,
                        "decode": clock.seconds(b, c), "edges": (clock.host(a), clock.host(b), clock.host(c))}

            runs["ttlt"] = (ttlt_once, self.warmup)
        for phase, (once, warmup) in runs.items():
            if phase == "tpot":
                s.prefill()
            rule = self._rule()
            reset_peak_memory(self.devices)
            part = {"ttft": "prefill", "tpot": "decode", "ttlt": "request"}[phase]
            chunk = _probed(self.probe, self.parts, part,
                            lambda: _repeat(phase.upper(), once, rule, "t", warmup, self.meter, self.progress))
            self.results.setdefault(phase, []).append(chunk)
            self.stops[phase] = rule.reason
            self._keep_peaks([phase])
        self.rounds += 1

    def _shared_round(self) -> None:
        """One loop of requests serving every phase (no energy window needs them apart)."""
        reset_peak_memory(self.devices)
        got, why = _shared_phases(self.session, self.clock, self.phases, self.gen_len, self.warmup, self._rule,
                                  self.probe, self.parts, self.progress)
        for phase, chunk in got.items():
            self.results.setdefault(phase, []).append(chunk)
        self.stops.update(why)
        self._keep_peaks(list(got))
        note = ("one loop of requests served every phase: each request's prefill is a TTFT sample"
                " and its decode steps TPOT samples (no energy window needs them apart)")
        if note not in self.notes:
            self.notes.append(note)
        self.rounds += 1

    def _keep_peaks(self, phases: list[str]) -> None:
        peaks = peak_memory(self.devices)
        for phase in phases:
            for dev, value in peaks.items():  # the largest over the rounds
                self.peaks.setdefault(phase, {})[dev] = max(value, self.peaks.get(phase, {}).get(dev, 0))

    def report(self) -> LatencyReport:
        if self._oom:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise GenerationOutOfMemory(out_of_memory_message(self.batch, self.prompt_len, self.gen_len, self.device))
        rep = _build_report(self.model, self.results, self.stops, self.phases, self.batch, self.prompt_len,
                            self.gen_len, self.device, self.engine, self.max_diff, self.rel_err, self.notes,
                            self.why_no_energy, self.label, self.peak_bw, self.peak_flops, self.environment)
        rep.extra["devices"] = [str(d) for d in self.devices]
        rep.extra["peak_memory"] = _peak_section(self.peaks)
        rep.extra["compile"] = self.compile_info
        rep.extra["shared_runs"] = self.shared
        rep.extra["time_to_result_s"] = time.perf_counter() - self.t_start
        rep.extra["memory"] = self._memory_section()
        runs = {phase: sum(len(res) for res, _ in chunks) for phase, chunks in self.results.items()}
        rep.notes.extend(reliability_notes(rep.data, runs, self.repeats, self.stops))
        if self.rounds > 1:
            rep.notes.append(f"pooled over {self.rounds} rounds")
        return rep.stamp(settings=self.settings, model=self.model, environment=self.environment)


    def _memory_section(self) -> dict[str, Any] | None:
        if self.probe is None:
            return None
        entries = [phase_entry(self.model, part, self.parts[part], self.batch, self.prompt_len, self.gen_len,
                               self.static_cache, self.probe.method)
                   for part in ("prefill", "decode", "request") if part in self.parts]
        remember_peaks(self.model, self.device, self.batch, self.prompt_len, self.gen_len, entries)
        return {"method": self.probe.method, "phases": entries}


def _pooled(chunks: list[tuple[list[dict], Any]]) -> list[dict]:
    return [res for results, _ in chunks for res in results]


def _probed(probe, peaks: dict, part: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with the memory probe around it, keeping the phase's peak under ``part``."""
    if probe is None:
        return fn()
    probe.start()
    try:
        return fn()
    finally:
        peaks[part] = probe.stop()


def _shared_phases(s, clock, phases, gen_len, warmup, rule, probe, peaks, progress):
    """One loop of requests for every phase, each step timed: TTFT = the request's prefill, TPOT = its steps.

    Each phase keeps its own stopping rule on its own samples; the loop ends when every phase's rule
    is met. The last warm-up request is where the prefill's and the decode steps' peaks are measured."""
    def request(timed: bool = True) -> dict:
        a = clock.start()
        s.prefill()
        marks = [clock.mark()]
        for _ in range(gen_len - 1):
            s.decode_step()
            marks.append(clock.mark())
        clock.sync()
        b, c = marks[0], marks[-1]
        return {"t": [clock.seconds(a, c)], "prefill": clock.seconds(a, b), "decode_steps": gen_len - 1,
                "decode": clock.seconds(b, c), "edges": (clock.host(a), clock.host(b), clock.host(c)),
                "steps": [clock.seconds(x, y) for x, y in zip(marks, marks[1:])]}

    for i in range(warmup):
        if probe is not None and i == warmup - 1:
            _probed(probe, peaks, "prefill", s.prefill)
            _probed(probe, peaks, "decode", lambda: [s.decode_step() for _ in range(gen_len - 1)])
        else:
            request()
    rules = {p: rule() for p in phases}
    samples: dict[str, list[float]] = {p: [] for p in phases}
    reqs: list[dict] = []
    bar = _progress("elana " + "+".join(p.upper() for p in phases), progress)

    def loop() -> None:
        t0 = time.perf_counter()
        while True:
            res = request()
            reqs.append(res)
            samples.get("ttft", []).append(res["prefill"])
            samples.get("tpot", []).extend(res["steps"])
            samples.get("ttlt", []).append(res["t"][0])
            if bar is not None:
                bar.update(1)
            elapsed = time.perf_counter() - t0
            # every rule is asked each time, so that each one records why it stopped
            done = [rules[p].done(len(reqs), elapsed, samples[p]) for p in phases]
            if all(done):
                return

    try:
        _probed(probe, peaks, "request", loop)
    finally:
        if bar is not None:
            bar.close()
    results: dict[str, Any] = {}
    if "ttft" in phases:
        results["ttft"] = ([{"t": [r["prefill"]]} for r in reqs], None)
    if "tpot" in phases:
        results["tpot"] = ([{"t": r["steps"]} for r in reqs], None)
    if "ttlt" in phases:
        results["ttlt"] = (reqs, None)
    return results, {p: rules[p].reason for p in phases}


NOISY_P99_OVER_MEDIAN = 3.0
NOISY_CI_OVER_MEDIAN = 0.05


def reliability_notes(data: dict[str, Any], runs: dict[str, int], repeats: int, stops: dict[str, str]) -> list[str]:
    """Plain warnings for figures that rest on fewer runs than asked, or are noisy (p99 over 3x the
    median, or a median's 95% CI wider than 5% of the median), each with what to do about it."""
    notes = []
    for phase in PHASES:
        if phase not in runs:
            continue
        name, stats = phase.upper(), data.get(f"{phase}_ms") or {}
        if runs[phase] < repeats:
            why = stops.get(phase) or "a limit"
            notes.append(f"{name} rests on {runs[phase]} of the {repeats} runs asked (stopped at {why}): "
                         "treat it as a rough figure; lower --gen-len/--prompt-len or allow more time")
        median, p99 = stats.get("median"), stats.get("p99")
        lo, hi = stats.get("ci95_low"), stats.get("ci95_high")
        if not median or median <= 0:
            continue
        if p99 is not None and p99 > NOISY_P99_OVER_MEDIAN * median:
            notes.append(f"{name} is noisy: p99 {p99:.4g} ms is {p99 / median:.1f}x the median {median:.4g} ms "
                         "(other work on the machine, clock changes or first-run costs): quiet the machine, "
                         "raise --warmup and --repeats, and prefer the median")
        elif lo is not None and hi is not None and hi - lo > NOISY_CI_OVER_MEDIAN * median:
            notes.append(f"{name} is noisy: the median's 95% CI ({lo:.4g}-{hi:.4g} ms) is "
                         f"{(hi - lo) / median:.0%} of the median: raise --repeats or --min-time, or quiet the machine")
    return notes


def _build_report(model, results, stops, phases, batch, prompt_len, gen_len, device, engine, max_diff,
                  rel_err, notes, why_no_energy, label, peak_bw, peak_flops, environment) -> LatencyReport:
    from .roofline import roofline

    ttft = [x for res in _pooled(results.get("ttft", [])) for x in res["t"]]
    steps = [x for res in _pooled(results.get("tpot", [])) for x in res["t"]]
    reqs = _pooled(results.get("ttlt", []))
    ttlt = [res["t"][0] for res in reqs]
    tpot_from_ttlt = ttlt_split = None
    if reqs and gen_len > 1:
        pre = summarize([r["prefill"] for r in reqs])["median"]
        dec = summarize([r["decode"] for r in reqs])["median"]
        ttlt_split = {"prefill": pre * 1e3, "decode": dec * 1e3}
        # vLLM's per-request definition, with the TTFT of the same request
        tpot_from_ttlt = summarize([r["decode"] / (gen_len - 1) for r in reqs])["median"] * 1e3
    name = environment.get("device_name") if environment else None
    tpot_s = summarize(steps)["median"] if steps else (tpot_from_ttlt / 1e3 if tpot_from_ttlt else None)
    ttft_s = summarize(ttft)["median"] if ttft else (ttlt_split["prefill"] / 1e3 if reqs else None)
    roof = roofline(model, batch, prompt_len, gen_len, engine, device, ttft_s=ttft_s, tpot_s=tpot_s,
                    peak_bw=peak_bw, peak_flops=peak_flops)
    if roof["peak_source"] is None:
        notes.append(f"no peak bandwidth/FLOP figures for {name}: pass --peak-bw/--peak-flops for MBU/MFU")
    return LatencyReport(
        label=label, model=type(model).__name__, device=str(device), device_name=name, engine=engine,
        cuda_graph=engine.startswith("cuda-graph"), graph_check_max_abs_diff=max_diff, graph_check_rel_err=rel_err,
        batch=batch, prompt_len=prompt_len, gen_len=gen_len, phases=list(phases),
        ttft_ms=_ms(summarize(ttft)), tpot_ms=_ms(summarize(steps)), ttlt_ms=_ms(summarize(ttlt)),
        tpot_from_ttlt_ms=tpot_from_ttlt, ttlt_split_ms=ttlt_split, stopped=dict(stops), roofline=roof,
        energy=_energy_section(results, batch, tpot_s, why_no_energy), notes=notes,
        ttft_samples_ms=[x * 1e3 for x in ttft], tpot_samples_ms=[x * 1e3 for x in steps],
        ttlt_samples_ms=[x * 1e3 for x in ttlt], extra={"round_sizes": _round_sizes(results)})


def _round_sizes(results) -> dict[str, list[int]]:
    """How many samples each round gave, per phase, in the order of the pooled samples."""
    sizes = {}
    for phase, chunks in results.items():
        if phase in ("ttft", "tpot", "ttlt"):
            sizes[phase] = [len(res) if phase == "ttlt" else sum(len(x["t"]) for x in res) for res, _ in chunks]
    return sizes


def _energy_section(results, batch, tpot_s, why_no_energy) -> dict[str, Any]:
    energy: dict[str, Any] = {"j_per_prompt": None, "j_per_token": None, "j_per_request": None,
                              "per_sequence": {"j_per_prompt": None, "j_per_token": None, "j_per_request": None},
                              "net": {"j_per_prompt": None, "j_per_token": None, "j_per_request": None},
                              "tokens_per_s": batch / tpot_s if tpot_s else None, "tokens_per_j": None,
                              "request_split_j": None, "request_split_counter_j": None, "windows": {}, "method": None, "idle_power_w": None,
                              "per_device": [], "reason": why_no_energy}
    units = {"ttft": ("j_per_prompt", lambda res: len(res)),
             "tpot": ("j_per_token", lambda res: sum(len(x["t"]) for x in res)),
             "ttlt": ("j_per_request", lambda res: len(res))}
    for phase, (key, count_of) in units.items():
        if phase not in results:
            continue
        chunks = results[phase]  # one (iterations, energy report) per round
        per_chunk = [(res, rep, _energy_values(rep)) for res, rep in chunks]
        if any(vals is None for _, _, vals in per_chunk):
            if any(rep is not None for _, rep, _ in per_chunk) and energy["reason"] is None:
                energy["reason"] = "the sensor gave no energy for the window"
            continue
        n = sum(count_of(res) for res, _, _ in per_chunk)
        total = {k: _sum_or_none([vals[k] for _, _, vals in per_chunk])
                 for k in ("energy_j", "net_energy_j", "duration_s", "uncertainty_j")}
        total["avg_power_w"] = total["energy_j"] / total["duration_s"] if total["duration_s"] else None
        energy[key] = total["energy_j"] / n
        energy["per_sequence"][key] = total["energy_j"] / n / batch
        if total["net_energy_j"] is not None:
            energy["net"][key] = total["net_energy_j"] / n
        energy["windows"][phase] = {**total, "iterations": n, "windows": len(per_chunk)}
        for _, rep, _ in per_chunk:
            _add_device_shares(energy["per_device"], rep, key, n)
        first = per_chunk[0][1]
        energy["method"] = energy["method"] or first.method
        energy["idle_power_w"] = energy["idle_power_w"] or first.idle_power_w
        if phase == "ttlt" and all(hasattr(rep, "energy_between") for _, rep, _ in per_chunk):
            pre = [rep.energy_between(a, b) for res, rep, _ in per_chunk for a, b, _ in (x["edges"] for x in res)]
            dec = [rep.energy_between(b, c) for res, rep, _ in per_chunk for _, b, c in (x["edges"] for x in res)]
            if None in pre or None in dec:
                energy["request_split_j"] = {"prefill": None, "decode": None,
                                             "reason": "the sensor gave no power timeline"}
            else:
                energy["request_split_j"] = {"prefill": sum(pre) / n, "decode": sum(dec) / n}
    _finish_device_shares(energy["per_device"])
    if energy["j_per_token"]:
        energy["tokens_per_j"] = batch / energy["j_per_token"]
    if energy["j_per_prompt"] is not None and energy["j_per_token"] is not None and "ttlt" in results:
        # The same split from the phase windows' counters: one prefill + (G-1) decode steps.
        steps = results["ttlt"][0][0][0]["decode_steps"]
        energy["request_split_counter_j"] = {"prefill": energy["j_per_prompt"],
                                             "decode": steps * energy["j_per_token"]}
    if any(energy[k] is not None for k in ("j_per_prompt", "j_per_token", "j_per_request")):
        energy["reason"] = None
    return energy


def _peak_section(peaks: dict[str, dict[str, int]]) -> dict[str, dict[str, int]] | None:
    """``{"cuda:0": {"ttft": bytes, "tpot": bytes, "ttlt": bytes, "max": bytes}, ...}`` (None off CUDA)."""
    out: dict[str, dict[str, int]] = {}
    for phase, per_device in peaks.items():
        for device, value in per_device.items():
            out.setdefault(device, {})[phase] = value
    for row in out.values():
        row["max"] = max(row.values())
    return out or None


def _add_device_shares(per_device: list[dict[str, Any]], rep, key: str, n: int) -> None:
    """Each counted sensor's part of one phase window (J per prompt / token / request; rounds add up)."""
    for dev in getattr(rep, "devices", []):
        if not dev.get("counted_in_total") or dev.get("energy_j") is None:
            continue
        row = next((r for r in per_device if r["name"] == dev["name"]), None)
        if row is None:
            index = dev.get("cuda_index")
            row = {"device": f"cuda:{index}" if index is not None else dev.get("kind"), "name": dev["name"],
                   "j_per_prompt": None, "j_per_token": None, "j_per_request": None, "window_j": 0.0, "share": None}
            per_device.append(row)
        row[key] = (row[key] or 0.0) + dev["energy_j"] / n
        row["window_j"] += dev["energy_j"]


def _finish_device_shares(per_device: list[dict[str, Any]]) -> None:
    """Share of each device in the energy of all the phase windows together."""
    total = sum(r["window_j"] for r in per_device)
    for row in per_device:
        row["share"] = row["window_j"] / total if total > 0 else None


def _sum_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values)


DEFAULT_ROUNDS = defaults.PAIRED_ROUNDS


def measure_paired(models: Sequence[torch.nn.Module], labels: Sequence[str] | None = None,
                   rounds: int = DEFAULT_ROUNDS, energy: bool | None = None, min_time: float = DEFAULT_MIN_TIME,
                   repeats: int = DEFAULT_REPEATS, progress: bool = True, **kwargs: Any):
    """Measure several models in alternating rounds (A B, B A, A B, ...) in one call, so that drifting
    clocks and temperature fall on all of them alike; returns the ``Comparison`` of their pooled
    reports (``.reports``, the first model is the baseline; ``.rounds`` and each report's ``rounds``
    record the order). ``min_time`` and ``repeats`` are per model, spread over the rounds; the other
    arguments are those of ``measure_latency``. Each model keeps its session (cache, graph) open
    across rounds, and one energy meter serves them all.

    The usual edits, each made on a copy so the original stays as it was::

        import copy
        half = copy.deepcopy(model).to(torch.bfloat16)                      # another dtype
        pruned = copy.deepcopy(model)                                       # dropped layers
        pruned.model.layers = pruned.model.layers[: 2 * len(pruned.model.layers) // 3]
        pruned.config.num_hidden_layers = len(pruned.model.layers)
        eager = copy.deepcopy(model); eager.set_attn_implementation("eager")   # another attention
        comparison = measure_paired([model, pruned], labels=["base", "pruned"])
    """
    import contextlib

    from ..core.compare import compare

    models = list(models)
    if len(models) < 2:
        raise GenerationInputError(f"paired mode needs at least two models, got {len(models)}")
    if len({id(m) for m in models}) < len(models):
        raise GenerationInputError("the same model is given twice: compare a copy (copy.deepcopy(model)) "
                                   "that you edited")
    labels = list(labels) if labels else [f"model {chr(65 + i)}" if i < 26 else f"model {i}" for i in range(len(models))]
    if len(labels) != len(models) or len(set(labels)) != len(labels):
        raise GenerationInputError(f"give one distinct label per model ({len(models)} models, labels {labels})")
    if not isinstance(rounds, int) or rounds < 1:
        raise GenerationInputError(f"rounds must be a positive integer, got {rounds!r}")
    notes: list[str] = []
    devices = list(dict.fromkeys(model_device(m) for m in models))
    meter, why = _open_meter(energy, devices, notes) if kwargs.get("meter") is None else (kwargs.pop("meter"), None)
    run_energy = False if meter is None else energy  # no sensor: say so once per report, below
    runs = [_Measurement(m, label=lab, energy=run_energy, meter=meter, min_time=min_time / rounds,
                         repeats=max(1, -(-repeats // rounds)), progress=progress, **kwargs)
            for m, lab in zip(models, labels)]
    for run in runs:
        if why and energy is not False:
            run.notes.append(why)
            run.why_no_energy = why
    order: list[str] = []
    own_live = None
    if progress is True and in_widget_frontend():  # a notebook: the live view, not a tqdm widget
        from ..core.live import LiveView

        own_live = LiveView("elana latency (paired)").start()
        for run in runs:
            run.progress = own_live
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(cpu_threads(devices))   # one thread choice for every model (core.threads)
            for run in runs:
                stack.enter_context(run)
            for i in range(rounds):  # rotated: A B, B A, ... so that no model always runs after another
                turn = i % len(runs)
                for run, lab in list(zip(runs, labels))[turn:] + list(zip(runs, labels))[:turn]:
                    run.run_round()
                    order.append(lab)
    finally:
        if own_live is not None:
            own_live.clear()
        if meter is not None:
            meter.close()
    reports = [run.report() for run in runs]
    for rep in reports:
        rep.rounds = list(order)
        rep.notes.append(f"paired with {', '.join(x for x in labels if x != rep.label)}: "
                         f"{rounds} alternating rounds")
    comparison = compare(reports, labels=labels)
    comparison.rounds = order
    return comparison
