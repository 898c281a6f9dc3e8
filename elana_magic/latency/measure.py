"""The runner: one model's latency measurement, in one round or several, on one ``LatencySettings`` cell.

Each phase is repeated (after a warm-up) inside one energy window until a minimum count and time are
met, or earlier once the median's 95% interval is within 1%, but never under the sample floor
(``defaults.SAMPLE_FLOOR`` samples and ``SAMPLE_FLOOR_S`` seconds) unless ``min_time`` is 0; with energy
on, a window also lasts at least ``energy_window_s`` so that it spans many ticks of the energy counter.

* TTFT: one prefill on a fresh cache (logits of the last position only), per iteration.
* TPOT: after one prefill, passes of ``gen_len - 1`` greedy decode steps over the real, growing
  positions (each pass rewinds to the prompt), every step timed (CUDA events on GPU). Energy / steps
  = J per decode step (one token per sequence).
* TTLT: prefill + ``gen_len - 1`` decode steps with the same engines, timed whole and split; the
  request's energy is split into prefill and decode from the power timeline.

The runner never calls back up: grids, replicas and paired rounds are decided in ``api``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable

import torch

from ..core import defaults
from ..core.progress import Progress, as_progress
from ..core.stats import StoppingRule
from ..core.threads import cpu_threads
from .clock import Clock, timed_run
from .devices import cuda_indices, peak_memory, reset_peak_memory
from .errors import GenerationOutOfMemory
from .figures import _peak_section, build_report, reliability_notes
from .inputs import is_out_of_memory, out_of_memory_message, prompt_ids
from .memory import MemoryProbe, phase_entry, remember_peaks
from .report import LatencyReport
from .session import GenerationSession
from .settings import PHASES, LatencySettings

_Clock = Clock  # its name before clock.py
__all__ = ["PHASES", "Measurement", "run_single"]


# -- repetition ------------------------------------------------------------------------------------
def _progress(name: str, progress: Progress | None, window: Any = None) -> Progress | None:
    """``progress`` told that phase ``name`` starts (with the window's power so far), or None."""
    if progress is not None:
        progress.phase(name, power=getattr(window, "power_so_far", None))
    return progress


def _repeat(name: str, run_once: Callable[[], dict], rule: StoppingRule, key: str, warmup: int,
            meter, progress: Progress | None) -> tuple[list[dict], Any]:
    """Warm up, then run ``run_once`` inside one energy window until ``rule`` says done."""
    _progress(f"{name} warm-up", progress)
    for _ in range(warmup):
        run_once()
    results: list[dict] = []
    pooled: list[float] = []
    window = meter.window(label=name) if meter is not None else contextlib.nullcontext()
    bar = None
    try:
        with window as win:
            bar = _progress(name, progress, win)
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


# -- measurement -----------------------------------------------------------------------------------
class Measurement:
    """One model's latency measurement on one cell of ``settings``, run in one or more rounds (a paired A/B
    alternates rounds across models, each keeping its session open); ``report()`` pools every round.
    ``rounds``: how many rounds the settings' repeats, min time and sample floor are spread over.
    ``open_meter``: False = measure energy only with ``meter`` (paired rounds share one, or none)."""

    def __init__(self, model: torch.nn.Module, settings: LatencySettings, *, tokenizer: Any = None,
                 meter: Any = None, progress: Any = True, rounds: int = 1, open_meter: bool = True):
        self.settings, self.planned_rounds = settings, rounds
        self.phases, self.model, self.label = settings.phases, model, settings.label
        self.progress = as_progress(progress)
        self.notes: list[str] = []
        input_ids = None
        prompt_len = settings.prompt_len
        if settings.prompt is not None:
            input_ids = prompt_ids(tokenizer, settings.prompt, settings.batch)
            if prompt_len != input_ids.shape[1]:
                prompt_len = int(input_ids.shape[1])
                self.notes.append(f"prompt length {prompt_len} follows the prompt text")
        self.batch, self.prompt_len, self.gen_len = settings.batch, prompt_len, settings.gen_len
        # on CUDA both timed steps compile by default: decode's, and the prefill's (a TTFT-only run too)
        compile_ = True if settings.compile is None else settings.compile
        self.session = GenerationSession(model, batch=settings.batch, prompt_len=prompt_len, gen_len=self.gen_len,
                                         cuda_graph=settings.cuda_graph, input_ids=input_ids, seed=settings.seed,
                                         compile=compile_, prefill=settings.prefill, checked=True)
        self.device, self.devices = self.session.device, self.session.devices
        self._open_energy(settings.energy if open_meter or meter is not None else False, meter)
        self.results: dict[str, list[tuple[list[dict], Any]]] = {}
        self.stops: dict[str, str] = {}
        self.peaks: dict[str, dict[str, int]] = {}
        self.rounds = 0
        self.environment = None
        self._oom = False
        self.shared = settings.shared_runs and self.meter is None and len(self.phases) > 1 and self.gen_len > 1
        self.probe = MemoryProbe(self.device) if settings.memory else None
        self.parts: dict[str, dict] = {}   # the memory probe's peak per part: prefill, decode, request
        self.compile_info, self.static_cache = None, False
        self.t_start = time.perf_counter()

    def _open_energy(self, energy: bool | None, meter: Any) -> None:
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

    def __enter__(self) -> "Measurement":
        from ..core.environment import capture_environment

        try:
            self.session.__enter__()
        except BaseException:
            self._close_meter()
            raise
        s = self.session
        self.notes.extend(n for n in (s.note, s.prefill_note) if n)
        if s.compile_s is not None and s.compile_s > 2.0 and (s.compile_info or {}).get("variant") == "new":
            self.notes.append(f"decode step compiled in {s.compile_s:.0f} s, before and apart from the measurement"
                              " (later runs of this shape on this model reuse it)")
        self.clock = Clock(self.devices)
        self.environment = capture_environment(self.device)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from ..core.environment import finish_environment

        try:
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

    def _rule(self, samples_per_run: int) -> StoppingRule:
        """The phase's stopping rule for one round: the settings' count and time, over the sample floor
        (spread over the planned rounds) unless ``min_time`` is 0 (the user forced fewer: a note says so)."""
        s, rounds = self.settings, self.planned_rounds
        repeats = -(-s.repeats // rounds)
        floor_runs = 0 if s.forced_few else math.ceil(defaults.SAMPLE_FLOOR / rounds / max(1, samples_per_run))
        floor_s = 0.0 if s.forced_few else defaults.SAMPLE_FLOOR_S / rounds
        energy_s = s.energy_window_s if self.meter is not None else 0.0
        return StoppingRule(min_count=max(repeats, floor_runs), min_time=s.min_time / rounds, rel_ci=s.rel_ci,
                            floor_time=max(energy_s, floor_s), max_time=s.max_time)

    def _once(self, phase: str) -> Callable[[], dict]:
        s, clock, steps = self.session, self.clock, self.gen_len - 1
        if phase == "ttft":
            return lambda: {"t": [timed_run(s, clock, prefill=True, steps=0, mark_steps=False)["prefill"]]}
        if phase == "tpot":
            return lambda: {"t": timed_run(s, clock, prefill=False, steps=steps, mark_steps=True)["steps"]}
        return lambda: timed_run(s, clock, prefill=True, steps=steps, mark_steps=False)

    def run_round(self) -> None:
        """Warm up and measure every phase once more (samples and energy windows add up over rounds)."""
        if self.shared:
            return self._shared_round()
        s, warmup = self.session, self.settings.warmup
        for phase in self.phases:
            if phase == "tpot":
                s.prefill()
            rule = self._rule(self.gen_len - 1 if phase == "tpot" else 1)
            reset_peak_memory(self.devices)
            part = {"ttft": "prefill", "tpot": "decode", "ttlt": "request"}[phase]
            once, phase_warmup = self._once(phase), max(1, warmup) if phase == "tpot" else warmup
            chunk = _probed(self.probe, self.parts, part,
                            lambda: _repeat(phase.upper(), once, rule, "t", phase_warmup, self.meter, self.progress))
            self.results.setdefault(phase, []).append(chunk)
            self.stops[phase] = rule.reason
            self._keep_peaks([phase])
        self.rounds += 1

    def _shared_round(self) -> None:
        """One loop of requests serving every phase (no energy window needs them apart)."""
        reset_peak_memory(self.devices)
        got, why = _shared_phases(self, self.settings.warmup)
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
        rep = build_report(self.model, self.results, self.stops, self.settings, self.session, self.notes,
                           self.why_no_energy, self.environment)
        rep.extra["devices"] = [str(d) for d in self.devices]
        rep.extra["peak_memory"] = _peak_section(self.peaks)
        rep.extra["compile"] = self.compile_info
        rep.extra["shared_runs"] = self.shared
        rep.extra["time_to_result_s"] = time.perf_counter() - self.t_start
        rep.extra["memory"] = self._memory_section()
        runs = {phase: sum(len(res) for res, _ in chunks) for phase, chunks in self.results.items()}
        rep.notes.extend(reliability_notes(rep.data, runs, self.settings.repeats, self.stops))
        if self.rounds > 1:
            rep.notes.append(f"pooled over {self.rounds} rounds")
        return rep.stamp(settings=self.settings.to_dict(), model=self.model, environment=self.environment)

    def _memory_section(self) -> dict[str, Any] | None:
        if self.probe is None:
            return None
        entries = [phase_entry(self.model, part, self.parts[part], self.batch, self.prompt_len, self.gen_len,
                               self.static_cache, self.probe.method)
                   for part in ("prefill", "decode", "request") if part in self.parts]
        remember_peaks(self.model, self.device, self.batch, self.prompt_len, self.gen_len, entries)
        return {"method": self.probe.method, "phases": entries}


def _probed(probe, peaks: dict, part: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with the memory probe around it, keeping the phase's peak under ``part``."""
    if probe is None:
        return fn()
    probe.start()
    try:
        return fn()
    finally:
        peaks[part] = probe.stop()


def _shared_phases(run: Measurement, warmup: int) -> tuple[dict[str, Any], dict[str, str]]:
    """One loop of requests for every phase, each step timed: TTFT = the request's prefill, TPOT = its steps.

    Each phase keeps its own stopping rule on its own samples; the loop ends when every phase's rule
    is met. The last warm-up request is where the prefill's and the decode steps' peaks are measured."""
    s, phases, steps = run.session, run.phases, run.gen_len - 1
    for i in range(warmup):
        if run.probe is not None and i == warmup - 1:
            _probed(run.probe, run.parts, "prefill", s.prefill)
            _probed(run.probe, run.parts, "decode", lambda: [s.decode_step() for _ in range(steps)])
        else:
            timed_run(s, run.clock, prefill=True, steps=steps, mark_steps=True)
    rules = {p: run._rule(steps if p == "tpot" else 1) for p in phases}
    samples: dict[str, list[float]] = {p: [] for p in phases}
    reqs: list[dict] = []
    bar = _progress("+".join(p.upper() for p in phases), run.progress)

    def loop() -> None:
        t0 = time.perf_counter()
        while True:
            res = timed_run(s, run.clock, prefill=True, steps=steps, mark_steps=True)
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
        _probed(run.probe, run.parts, "request", loop)
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


def run_single(model: torch.nn.Module, settings: LatencySettings, *, tokenizer: Any = None, meter: Any = None,
               progress: Any = True) -> LatencyReport:
    """One model, one cell, one round: the report. ``progress``: see ``core.progress``."""
    run = Measurement(model, settings, tokenizer=tokenizer, meter=meter, progress=progress)
    with cpu_threads(run.device), run:   # threads chosen from the free cores (core.threads)
        run.run_round()
    return run.report()
