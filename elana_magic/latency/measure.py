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

from .devices import cuda_indices, model_devices, peak_memory, reset_peak_memory
from .devices import synchronize as synchronize_devices
from .session import (GenerationInputError, GenerationOutOfMemory, GenerationSession, is_out_of_memory,
                      out_of_memory_message)
from .report import LatencyReport, _ms
from ..core import defaults
from ..core.display import in_widget_frontend
from ..core.stats import StoppingRule, summarize

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


def _environment(device: torch.device) -> dict[str, Any]:
    import transformers

    from .roofline import device_name

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "device_name": device_name(device)}
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        try:
            import pynvml

            pynvml.nvmlInit()
            env["driver"] = pynvml.nvmlSystemGetDriverVersion()
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - the driver version is a nicety
            pass
    return env


def _energy_values(rep) -> dict[str, Any] | None:
    if rep is None or rep.energy_j is None:
        return None
    return {"energy_j": rep.energy_j, "net_energy_j": rep.net_energy_j, "duration_s": rep.duration_s,
            "avg_power_w": rep.avg_power_w, "uncertainty_j": getattr(rep, "uncertainty_j", None)}


def _decodes(phases: Sequence[str]) -> bool:
    """Compiling the decode step pays off only where decode steps are timed."""
    return "tpot" in phases or "ttlt" in phases


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
                    batch: int = defaults.BATCH, prompt_len: int = defaults.PROMPT_LEN, gen_len: int = defaults.GEN_LEN,
                    energy: bool | None = None,
                    cuda_graph: bool | None = None, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
                    min_time: float = DEFAULT_MIN_TIME, label: str | None = None, prompt: str | None = None,
                    peak_bw: float | None = None, peak_flops: float | None = None,
                    energy_window_s: float = DEFAULT_ENERGY_WINDOW_S, max_time: float | None = None,
                    rel_ci: float = 0.01, progress: Any = True, seed: int = 0, meter=None,
                    compile: bool | str | None = None, ngpus: int | None = None) -> LatencyReport:
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
    a ``ReplicaLatencyReport``."""
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
    notes: list[str] = []
    input_ids = None
    if prompt is not None:
        input_ids = _prompt_ids(tokenizer, prompt, batch)
        if prompt_len != input_ids.shape[1]:
            prompt_len = int(input_ids.shape[1])
            notes.append(f"prompt length {prompt_len} follows the prompt text")
    session = GenerationSession(model, batch=batch, prompt_len=prompt_len, gen_len=gen_len,
                                cuda_graph=cuda_graph, input_ids=input_ids, seed=seed,
                                compile=_decodes(phases) if compile is None else compile)
    device, devices = session.device, session.devices
    own_meter = meter is None or energy is False
    if own_meter:
        meter, why_no_energy = _open_meter(energy, devices, notes)
    else:
        why_no_energy = None if meter.available else f"energy unavailable: {meter.reason}"
        meter = meter if meter.available else None
        missing = _uncovered(meter, devices) if meter is not None else []
        if missing:
            notes.append(f"the meter passed in does not measure GPU(s) {missing} of the model: their energy is "
                         "not counted")
    if why_no_energy and energy is not False:
        notes.append(why_no_energy)
    floor_time = energy_window_s if meter is not None else 0.0

    def rule() -> StoppingRule:
        return StoppingRule(min_count=repeats, min_time=min_time, rel_ci=rel_ci, floor_time=floor_time,
                            max_time=max_time)

    results: dict[str, Any] = {}
    stops: dict[str, str] = {}
    peaks: dict[str, dict[str, int]] = {}

    def run_phase(phase: str, name: str, run_once, warm: int) -> None:
        reset_peak_memory(devices)
        r = rule()
        results[phase] = _repeat(name, run_once, r, "t", warm, meter, progress)
        stops[phase] = r.reason
        peaks[phase] = peak_memory(devices)

    own_live = None
    if progress is True and in_widget_frontend():  # a notebook: the live view, not a tqdm widget
        from ..core.live import LiveView

        progress = own_live = LiveView("elana latency").start()
    try:
        with session as s:
            if s.note:
                notes.append(s.note)
            if s.compile_s is not None and s.compile_s > 2.0:
                notes.append(f"decode step compiled in {s.compile_s:.0f} s (later runs of this shape on this model reuse it)")
            clock = _Clock(devices)
            if "ttft" in phases:
                def ttft_once() -> dict:
                    a = clock.start()
                    s.prefill()
                    b = clock.mark()
                    clock.sync()
                    return {"t": [clock.seconds(a, b)]}

                run_phase("ttft", "TTFT", ttft_once, warmup)
            if "tpot" in phases:
                s.prefill()

                def tpot_once() -> dict:
                    s.restart_decode()
                    marks = [clock.start()]
                    for _ in range(gen_len - 1):
                        s.decode_step()
                        marks.append(clock.mark())
                    clock.sync()
                    return {"t": [clock.seconds(a, b) for a, b in zip(marks, marks[1:])]}

                run_phase("tpot", "TPOT", tpot_once, max(1, warmup))
            if "ttlt" in phases:
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

                run_phase("ttlt", "TTLT", ttlt_once, warmup)
            engine, max_diff, rel_err = s.engine, s.max_abs_diff, s.rel_err
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        results = None  # raised below, once the traceback (and the tensors its frames hold) is gone
    finally:
        if own_live is not None:
            own_live.clear()
        if meter is not None and own_meter:
            meter.close()
    if results is None:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise GenerationOutOfMemory(out_of_memory_message(batch, prompt_len, gen_len, device))
    report = _build_report(model, results, stops, phases, batch, prompt_len, gen_len, device, engine, max_diff,
                           rel_err, notes, why_no_energy, label, peak_bw, peak_flops)
    report.data["devices"] = [str(d) for d in devices]
    report.data["peak_memory"] = _peak_section(peaks)
    runs = {phase: len(results[phase][0]) for phase in results}
    report.data["notes"].extend(reliability_notes(report.data, runs, repeats, stops))
    return report


def _peak_section(peaks: dict[str, dict[str, int]]) -> dict[str, dict[str, int]] | None:
    """``{"cuda:0": {"ttft": bytes, "tpot": bytes, "ttlt": bytes, "max": bytes}, ...}`` (None off CUDA)."""
    out: dict[str, dict[str, int]] = {}
    for phase, per_device in peaks.items():
        for device, value in per_device.items():
            out.setdefault(device, {})[phase] = value
    for row in out.values():
        row["max"] = max(row.values())
    return out or None


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
                  rel_err, notes, why_no_energy, label, peak_bw, peak_flops) -> LatencyReport:
    from .roofline import roofline

    ttft = [x for res in results.get("ttft", ([], None))[0] for x in res["t"]]
    steps = [x for res in results.get("tpot", ([], None))[0] for x in res["t"]]
    reqs = results.get("ttlt", ([], None))[0]
    ttlt = [res["t"][0] for res in reqs]
    data: dict[str, Any] = {
        "label": label,
        "model": type(model).__name__,
        "device": str(device),
        "device_name": None,
        "engine": engine,
        "cuda_graph": engine.startswith("cuda-graph"),
        "graph_check_max_abs_diff": max_diff,
        "graph_check_rel_err": rel_err,
        "batch": batch, "prompt_len": prompt_len, "gen_len": gen_len,
        "phases": list(phases),
        "ttft_ms": _ms(summarize(ttft)),
        "tpot_ms": _ms(summarize(steps)),
        "ttlt_ms": _ms(summarize(ttlt)),
        "tpot_from_ttlt_ms": None,
        "ttlt_split_ms": None,
        "stopped": stops,
    }
    if reqs and gen_len > 1:
        pre = summarize([r["prefill"] for r in reqs])["median"]
        dec = summarize([r["decode"] for r in reqs])["median"]
        data["ttlt_split_ms"] = {"prefill": pre * 1e3, "decode": dec * 1e3}
        # vLLM's per-request definition, with the TTFT of the same request
        data["tpot_from_ttlt_ms"] = summarize([r["decode"] / (gen_len - 1) for r in reqs])["median"] * 1e3
    env = _environment(device)
    data["device_name"] = env["device_name"]
    data["environment"] = env
    tpot_s = summarize(steps)["median"] if steps else (
        data["tpot_from_ttlt_ms"] / 1e3 if data["tpot_from_ttlt_ms"] else None)
    ttft_s = summarize(ttft)["median"] if ttft else (data["ttlt_split_ms"]["prefill"] / 1e3 if reqs else None)
    data["roofline"] = roofline(model, batch, prompt_len, gen_len, engine, device, ttft_s=ttft_s, tpot_s=tpot_s,
                                peak_bw=peak_bw, peak_flops=peak_flops)
    if data["roofline"]["peak_source"] is None:
        notes.append(f"no peak bandwidth/FLOP figures for {env['device_name']}: pass --peak-bw/--peak-flops for MBU/MFU")
    data["energy"] = _energy_section(results, batch, tpot_s, why_no_energy)
    data["notes"] = notes
    return LatencyReport(data, [x * 1e3 for x in steps])


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
        res, rep = results[phase]
        vals = _energy_values(rep)
        if vals is None:
            if rep is not None and energy["reason"] is None:
                energy["reason"] = "the sensor gave no energy for the window"
            continue
        n = count_of(res)
        energy[key] = vals["energy_j"] / n
        energy["per_sequence"][key] = vals["energy_j"] / n / batch
        if vals["net_energy_j"] is not None:
            energy["net"][key] = vals["net_energy_j"] / n
        energy["windows"][phase] = {**vals, "iterations": n}
        _add_device_shares(energy["per_device"], rep, key, n)
        energy["method"] = energy["method"] or rep.method
        energy["idle_power_w"] = energy["idle_power_w"] or rep.idle_power_w
        if phase == "ttlt" and hasattr(rep, "energy_between"):
            pre = [rep.energy_between(a, b) for a, b, _ in (x["edges"] for x in res)]
            dec = [rep.energy_between(b, c) for _, b, c in (x["edges"] for x in res)]
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
        steps = results["ttlt"][0][0]["decode_steps"]
        energy["request_split_counter_j"] = {"prefill": energy["j_per_prompt"],
                                             "decode": steps * energy["j_per_token"]}
    if any(energy[k] is not None for k in ("j_per_prompt", "j_per_token", "j_per_request")):
        energy["reason"] = None
    return energy


def _add_device_shares(per_device: list[dict[str, Any]], rep, key: str, n: int) -> None:
    """Each counted sensor's part of one phase window (J per prompt / token / request)."""
    for dev in getattr(rep, "devices", []):
        if not dev.get("counted_in_total") or dev.get("energy_j") is None:
            continue
        row = next((r for r in per_device if r["name"] == dev["name"]), None)
        if row is None:
            index = dev.get("cuda_index")
            row = {"device": f"cuda:{index}" if index is not None else dev.get("kind"), "name": dev["name"],
                   "j_per_prompt": None, "j_per_token": None, "j_per_request": None, "window_j": 0.0, "share": None}
            per_device.append(row)
        row[key] = dev["energy_j"] / n
        row["window_j"] += dev["energy_j"]


def _finish_device_shares(per_device: list[dict[str, Any]]) -> None:
    """Share of each device in the energy of all the phase windows together."""
    total = sum(r["window_j"] for r in per_device)
    for row in per_device:
        row["share"] = row["window_j"] / total if total > 0 else None
