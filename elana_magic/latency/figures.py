"""A measurement's figures: statistics per phase, energy per unit and per device, peak memory, the notes on
figures that rest on few samples or are noisy, and the ``LatencyReport`` they make."""

from __future__ import annotations

from typing import Any

from ..core import cost, defaults
from ..core.stats import summarize
from .devices import cuda_indices, model_devices
from .report import LatencyReport, _ms
from .settings import PHASES


def _energy_values(rep) -> dict[str, Any] | None:
    if rep is None or rep.energy_j is None:
        return None
    return {"energy_j": rep.energy_j, "net_energy_j": rep.net_energy_j, "duration_s": rep.duration_s,
            "avg_power_w": rep.avg_power_w, "uncertainty_j": getattr(rep, "uncertainty_j", None)}


def _pooled(chunks: list[tuple[list[dict], Any]]) -> list[dict]:
    return [res for results, _ in chunks for res in results]


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
        n = stats.get("n") or 0
        if 0 < n < defaults.SAMPLE_FLOOR:
            notes.append(f"the {name} median rests on {n} sample{'s' if n > 1 else ''}, under the floor of "
                         f"{defaults.SAMPLE_FLOOR}: not a firm figure (--min-time above 0 measures to the floor)")
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


def build_report(model, results, stops, settings, session, notes, why_no_energy, environment) -> LatencyReport:
    """The report of one model's pooled rounds: ``session`` says which engines ran (and their checks)."""
    from .roofline import roofline

    batch, prompt_len, gen_len = settings.batch, session.prompt_len, settings.gen_len
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
    engine, device = session.engine, session.device
    roof = roofline(model, batch, prompt_len, gen_len, engine, device, ttft_s=ttft_s, tpot_s=tpot_s,
                    peak_bw=settings.peak_bw, peak_flops=settings.peak_flops)
    if roof["peak_source"] is None:
        notes.append(f"no peak bandwidth/FLOP figures for {name}: pass --peak-bw/--peak-flops for MBU/MFU")
    energy = _energy_section(results, batch, tpot_s, why_no_energy)
    ttlt_s = summarize(ttlt)["median"] if ttlt else None
    costs = cost.cost_section({k: getattr(settings, k) for k in cost.RATES}, tpot_s=tpot_s, ttlt_s=ttlt_s,
                              batch=batch, gen_len=gen_len, gpus=len(cuda_indices(model_devices(model))) or 1,
                              j_per_token_seq=energy["per_sequence"]["j_per_token"],
                              j_per_request_seq=energy["per_sequence"]["j_per_request"])
    return LatencyReport(
        label=settings.label, model=type(model).__name__, device=str(device), device_name=name, engine=engine,
        cuda_graph=engine.startswith("cuda-graph"), graph_check_max_abs_diff=session.max_abs_diff,
        graph_check_rel_err=session.rel_err, batch=batch, prompt_len=prompt_len, gen_len=gen_len,
        phases=list(settings.phases), ttft_ms=_ms(summarize(ttft)), tpot_ms=_ms(summarize(steps)),
        ttlt_ms=_ms(summarize(ttlt)), tpot_from_ttlt_ms=tpot_from_ttlt, ttlt_split_ms=ttlt_split,
        stopped=dict(stops), roofline=roof, energy=energy,
        notes=notes, ttft_samples_ms=[x * 1e3 for x in ttft], tpot_samples_ms=[x * 1e3 for x in steps],
        ttlt_samples_ms=[x * 1e3 for x in ttlt],
        extra={"round_sizes": _round_sizes(results), "engines": dict(session.engines),
               "prefill_check": session.prefill_check, **({"cost": costs} if costs else {})})


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
