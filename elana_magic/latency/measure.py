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

from .session import GenerationInputError, GenerationOutOfMemory, GenerationSession, out_of_memory_message
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
    """Marks on the device's timeline: CUDA events on GPU, perf_counter on CPU (work there is synchronous).

    ``host(mark)`` maps a mark to perf_counter seconds (anchored at ``start()``), so phase edges line up
    with the energy sampler's timeline."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self._pool: list[Any] = []
        self._used = 0
        self._base_t = 0.0
        self._base = None

    def start(self) -> Any:
        """Synchronize, anchor host time, and return the first mark of an iteration."""
        self.sync()
        self._used = 0
        self._base_t = time.perf_counter()
        self._base = self.mark()
        return self._base

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        if self._used == len(self._pool):
            self._pool.append(torch.cuda.Event(enable_timing=True))
        ev = self._pool[self._used]
        self._used += 1
        ev.record()
        return ev

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def host(self, m: Any) -> float:
        return self._base_t + self.seconds(self._base, m)


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
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    if ids.numel() == 0:
        raise GenerationInputError("the prompt encodes to zero tokens: give some text")
    return ids[:1].expand(batch, -1)


def _open_meter(energy: bool | None, device: torch.device, notes: list[str]):
    """An EnergyMeter for the model's device, or None (with the reason in ``notes``)."""
    if energy is False:
        return None, "energy off (--no-energy)"
    try:
        from ..energy import EnergyMeter
    except ImportError as exc:
        reason = f"energy unavailable: elana_magic.energy cannot be imported ({exc})"
        return None, reason
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    try:
        meter = EnergyMeter(devices=devices)
    except Exception as exc:  # noqa: BLE001 - no sensor is a note, not a failure
        return None, f"energy unavailable: {exc}"
    if not meter.available:
        reason = meter.reason or "no energy sensor"
        meter.close()
        return None, f"energy unavailable: {reason}"
    return meter, None


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


def measure_latency(model: torch.nn.Module, tokenizer: Any = None, phases: Sequence[str] = PHASES,
                    batch: int = defaults.BATCH, prompt_len: int = defaults.PROMPT_LEN, gen_len: int = defaults.GEN_LEN,
                    energy: bool | None = None,
                    cuda_graph: bool | None = None, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS,
                    min_time: float = DEFAULT_MIN_TIME, label: str | None = None, prompt: str | None = None,
                    peak_bw: float | None = None, peak_flops: float | None = None,
                    energy_window_s: float = DEFAULT_ENERGY_WINDOW_S, max_time: float | None = None,
                    rel_ci: float = 0.01, progress: Any = True, seed: int = 0, meter=None,
                    compile: bool | str | None = None) -> LatencyReport:
    """Measure TTFT / TPOT / TTLT (any subset of ``phases``) of ``model`` as loaded; see the module doc.

    ``energy``: None = on when a sensor exists. ``compile``: None = the CUDA-graph engine captures an
    Inductor-compiled decode step (compiled once per model and shape; a note says so); True/"regional" = one
    compiled decoder block shared by every layer (the default), "whole" = the whole forward compiled, False = none. ``meter``: an open ``EnergyMeter`` to reuse (its idle power
    is then measured once across calls); it is left open. ``progress``: True = a tqdm bar in a terminal,
    a live view in a notebook (cleared at the end); a ``core.live.LiveView`` to report into; False = none."""
    phases = tuple(dict.fromkeys(p.lower() for p in (phases or PHASES)))
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise GenerationInputError(f"unknown phase {unknown[0]!r}: choose from ttft, tpot, ttlt")
    for name, value in (("warmup", warmup),):
        if not isinstance(value, int) or value < 0:
            raise GenerationInputError(f"{name} must be a non-negative integer, got {value!r}")
    if not isinstance(repeats, int) or repeats <= 0:
        raise GenerationInputError(f"repeats must be a positive integer, got {repeats!r}")
    if not (min_time >= 0):
        raise GenerationInputError(f"min time must be >= 0 seconds, got {min_time!r}")
    notes: list[str] = []
    input_ids = None
    if prompt is not None:
        input_ids = _prompt_ids(tokenizer, prompt, batch)
        if prompt_len != input_ids.shape[1]:
            prompt_len = int(input_ids.shape[1])
            notes.append(f"prompt length {prompt_len} follows the prompt text")
    if "tpot" in phases and gen_len < 2:
        raise GenerationInputError("TPOT needs at least 2 generated tokens: raise --gen-len")
    session = GenerationSession(model, batch=batch, prompt_len=prompt_len, gen_len=gen_len,
                                cuda_graph=cuda_graph, input_ids=input_ids, seed=seed,
                                compile=_decodes(phases) if compile is None else compile)
    device = session.device
    own_meter = meter is None or energy is False
    if own_meter:
        meter, why_no_energy = _open_meter(energy, device, notes)
    else:
        why_no_energy = None if meter.available else f"energy unavailable: {meter.reason}"
        meter = meter if meter.available else None
    if why_no_energy and energy is not False:
        notes.append(why_no_energy)
    floor_time = energy_window_s if meter is not None else 0.0

    def rule() -> StoppingRule:
        return StoppingRule(min_count=repeats, min_time=min_time, rel_ci=rel_ci, floor_time=floor_time,
                            max_time=max_time)

    results: dict[str, Any] = {}
    stops: dict[str, str] = {}
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
            clock = _Clock(device)
            if "ttft" in phases:
                def ttft_once() -> dict:
                    a = clock.start()
                    s.prefill()
                    b = clock.mark()
                    clock.sync()
                    return {"t": [clock.seconds(a, b)]}

                r = rule()
                results["ttft"] = _repeat("TTFT", ttft_once, r, "t", warmup, meter, progress)
                stops["ttft"] = r.reason
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

                r = rule()
                results["tpot"] = _repeat("TPOT", tpot_once, r, "t", max(1, warmup), meter, progress)
                stops["tpot"] = r.reason
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

                r = rule()
                results["ttlt"] = _repeat("TTLT", ttlt_once, r, "t", warmup, meter, progress)
                stops["ttlt"] = r.reason
            engine, max_diff, rel_err = s.engine, s.max_abs_diff, s.rel_err
    except torch.OutOfMemoryError:
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
    return _build_report(model, results, stops, phases, batch, prompt_len, gen_len, device, engine, max_diff,
                         rel_err, notes, why_no_energy, label, peak_bw, peak_flops)


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
                              "reason": why_no_energy}
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
