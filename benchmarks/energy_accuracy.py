"""Energy of short and long GPU loads: our window vs ELANA's method vs a long-window counter reference.

For each load (0.05, 0.2, 1, 5 s of bf16 matmuls), run side by side in one process:

* ours      - ``EnergyMeter.window()``: NVML counter with tick-located edges + instant-power edges
* counter   - the naive counter difference at the window's edges (what Zeus/CodeCarbon do)
* ELANA     - ``nvmlDeviceGetPowerUsage`` polled every 100 ms, mean x duration
* reference - one long counter window, tick to tick, around K repetitions of (idle gap, load),
              minus the idle energy of the gaps (idle power from tick-aligned idle windows measured
              before and after), divided by K

A second sampler runs across each long window; from its counter periods each window's energy is
recomputed two ways: edge periods split against the power outside (the library's model) and split
in proportion to their overlap (``uniform``), to show what the edge model is worth.

Also: a steady ~3 s load (window vs the counter read independently around it; timeline vs counter),
the counter's update period and the cost of one NVML read.

    python benchmarks/energy_accuracy.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import threading
import time

import pynvml
import torch

from elana_magic.energy import EnergyMeter
from elana_magic.energy.sampler import Sampler, integrate
from elana_magic.energy.periods import counter_periods, window_energy

N = 8192
LOADS = [(0.05, 10), (0.2, 6), (1.0, 3), (5.0, 1)]  # (seconds, repetitions K)
GAP_S = 0.4


def tick(handle) -> tuple[float, int]:
    """Poll the counter until it changes: (time of the change, mJ)."""
    first = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    prev_t = time.perf_counter()
    while True:
        value = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        now = time.perf_counter()
        if value != first:
            return (prev_t + now) / 2, value
        prev_t = now


class ElanaPoller:
    """ELANA's method: a thread polls nvmlDeviceGetPowerUsage every 100 ms; energy = mean x duration."""

    def __init__(self, handle) -> None:
        self.handle, self.samples, self.stop = handle, [], threading.Event()
        self.thread = threading.Thread(target=self.run, name="baseline-elana-poller", daemon=True)

    def run(self) -> None:
        while True:
            self.samples.append(pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0)
            if self.stop.wait(0.1):
                return

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        torch.cuda.synchronize()
        self.duration = time.perf_counter() - self.t0
        self.stop.set()
        self.thread.join()
        self.energy_j = statistics.mean(self.samples) * self.duration


class Load:
    def __init__(self) -> None:
        self.a = torch.randn(N, N, device="cuda", dtype=torch.bfloat16)
        self.b = torch.randn(N, N, device="cuda", dtype=torch.bfloat16)
        self.calibrate()

    def calibrate(self) -> None:
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(100):
            torch.mm(self.a, self.b)
        torch.cuda.synchronize()
        self.mm_s = (time.perf_counter() - t) / 100

    def launch(self, seconds: float) -> None:
        for _ in range(max(1, round(seconds / self.mm_s))):
            torch.mm(self.a, self.b)

    def run(self, seconds: float) -> None:
        """About ``seconds`` of matmuls, never more than ~0.15 s queued, synchronized at the end."""
        pending = []
        remaining = seconds
        while remaining > 1e-9:
            chunk = min(0.05, remaining)
            self.launch(chunk)
            remaining -= chunk
            event = torch.cuda.Event()
            event.record()
            pending.append(event)
            if len(pending) > 3:
                pending.pop(0).synchronize()
        torch.cuda.synchronize()


def idle_power(handle, seconds: float = 2.0) -> float:
    torch.cuda.synchronize()
    ta, ea = tick(handle)
    time.sleep(seconds)
    tb, eb = tick(handle)
    return (eb - ea) / 1000.0 / (tb - ta)


def accuracy(meter: EnergyMeter, handle, load: Load) -> list[dict]:
    rows = []
    for seconds, reps in LOADS:
        ours, naive, elana, durations, edges = [], [], [], [], []
        time.sleep(0.3)
        p_idle = idle_power(handle, 1.0)  # just before this row: the gaps follow loads, GPU still warm
        diag = Sampler(meter.sensors[:1], meter.sample_hz)
        diag.read_all()
        diag.start()
        try:
            ta, ea = tick(handle)
            for _ in range(reps):
                time.sleep(GAP_S)
                with ElanaPoller(handle) as poll:
                    with meter.window(label=f"{seconds} s") as win:
                        load.run(seconds)
                rep = win.report
                ours.append(rep.energy_j)
                naive.append(rep.devices[0]["counter_delta_j"])
                elana.append(poll.energy_j)
                durations.append(rep.duration_s)
                edges.append((rep.t_start, rep.t_end))
            time.sleep(GAP_S)
            tb, eb = tick(handle)
        finally:
            diag.stop()
        series = diag.series[0]
        periods = counter_periods(series, 0.1)

        def uniform(a: float, b: float) -> float:
            return sum(p.energy_j * max(0.0, min(p.end, b) - max(p.start, a)) / (p.end - p.start) for p in periods)

        offline = {"second_sampler_j": statistics.mean(window_energy(periods, a, b, None, None)["energy_j"]
                                                       for a, b in edges),
                   "uniform_split_j": statistics.mean(uniform(a, b) for a, b in edges)}
        long_j = (eb - ea) / 1000.0
        outside_s = (tb - ta) - sum(durations)
        reference = (long_j - p_idle * outside_s) / reps
        row = {
            "load_s": seconds, "repetitions": reps, "window_s": statistics.mean(durations),
            "reference_j": reference, "idle_w": p_idle, "long_window_j": long_j, "long_window_s": tb - ta,
            "ours_j": statistics.mean(ours), "naive_counter_j": statistics.mean(naive),
            "elana_j": statistics.mean(elana),
            "ours_uncertainty_j": statistics.mean(d["uncertainty_j"] for d in rep.devices[:1]),
        }
        row.update(offline)
        for key in offline:
            row[key.replace("_j", "_err_pct")] = 100.0 * (offline[key] - reference) / reference
        if seconds == 0.2:
            a, b = edges[0]
            ts, ps = series.power_series()
            row["step_response"] = {"window_s": b - a, "t_s": [t - a for t in ts if a - 0.2 <= t <= b + 0.4],
                                    "power_w": [p for t, p in zip(ts, ps) if a - 0.2 <= t <= b + 0.4]}
        for key in ("ours", "naive_counter", "elana"):
            row[f"{key}_err_pct"] = 100.0 * (row[f"{key}_j"] - reference) / reference
            row[f"{key}_worst_err_pct"] = 100.0 * max(
                (abs(x - reference) for x in {"ours": ours, "naive_counter": naive, "elana": elana}[key])
            ) / reference
        rows.append(row)
        print(f"  {seconds:>5} s x{reps} ({row['window_s']:.3f} s): ref {reference:8.2f} J  ours {row['ours_err_pct']:+6.2f}%  "
              f"naive {row['naive_counter_err_pct']:+6.2f}%  ELANA {row['elana_err_pct']:+7.2f}%  second sampler "
              f"{row['second_sampler_err_pct']:+6.2f}%  uniform split {row['uniform_split_err_pct']:+6.2f}%", flush=True)
    return rows


class BackgroundLoad:
    """Matmuls launched from another thread on its own stream (at most ~0.1 s queued): the GPU stays
    busy across the window's edges and while the window waits for the delayed sensor."""

    def __init__(self, load: Load) -> None:
        self.load, self.stop = load, threading.Event()
        self.thread = threading.Thread(target=self.run, name="bench-load", daemon=True)

    def run(self) -> None:
        stream, pending = torch.cuda.Stream(), []
        with torch.cuda.stream(stream):
            while not self.stop.is_set():
                self.load.launch(0.02)
                event = torch.cuda.Event()
                event.record(stream)
                pending.append(event)
                if len(pending) > 5:
                    pending.pop(0).synchronize()
        stream.synchronize()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def steady(meter: EnergyMeter, handle, load: Load) -> dict:
    with BackgroundLoad(load):
        time.sleep(1.0)
        ta, ea = tick(handle)
        with meter.window(label="steady") as win:
            time.sleep(3.0)
        tb, eb = tick(handle)
    rep = win.report
    tl = rep.timelines[0]
    reference_w = (eb - ea) / 1000.0 / (tb - ta)
    window_w = rep.energy_j / rep.duration_s
    timeline_w = integrate(tl.readings_t, tl.readings_w, rep.t_start, rep.t_end) / rep.duration_s
    return {
        "duration_s": rep.duration_s, "window_energy_j": rep.energy_j, "uncertainty_j": rep.uncertainty_j,
        "window_avg_w": window_w, "counter_around_avg_w": reference_w, "timeline_avg_w": timeline_w,
        "window_vs_counter_pct": 100 * (window_w - reference_w) / reference_w,
        "timeline_vs_counter_pct": 100 * (timeline_w - window_w) / window_w,
        "samples": rep.to_dict()["samples"], "sample_rate_hz": rep.to_dict()["samples"] / rep.duration_s,
        "counter_tick_s": rep.devices[0]["counter_tick_s"], "edge_scale": tl.scale,
    }


def read_costs(handle) -> dict:
    def cost(fn, n=50):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n

    gaps = []
    last_t, last = tick(handle)
    for _ in range(15):
        t, v = tick(handle)
        gaps.append(t - last_t)
        last_t = t
    probes = []  # does a field value carry the time the counter / power was last updated?
    for _ in range(40):
        values = pynvml.nvmlDeviceGetFieldValues(handle, [83, 186])
        now_us = time.time() * 1e6
        probes.append({"energy_mj": values[0].value.ullVal, "energy_age_us": now_us - values[0].timestamp,
                       "power_mw": values[1].value.uiVal, "power_age_us": now_us - values[1].timestamp,
                       "latency_us": [values[0].latencyUsec, values[1].latencyUsec]})
        time.sleep(0.01)
    return {
        "field_timestamp_probe": probes,
        "total_energy_call_s": cost(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), 20),
        "field_power_instant_s": cost(lambda: pynvml.nvmlDeviceGetFieldValues(handle, [186])),
        "field_energy_and_power_s": cost(lambda: pynvml.nvmlDeviceGetFieldValues(handle, [83, 186]), 20),
        "power_usage_call_s": cost(lambda: pynvml.nvmlDeviceGetPowerUsage(handle)),
        "counter_tick_median_s": statistics.median(gaps), "counter_tick_min_s": min(gaps),
        "counter_tick_max_s": max(gaps),
    }


def environment(handle) -> dict:
    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    import transformers

    return {
        "card": text(pynvml.nvmlDeviceGetName(handle)), "driver": text(pynvml.nvmlSystemGetDriverVersion()),
        "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
        "nvidia_ml_py": getattr(pynvml, "__version__", None) or "see pip",
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0,
    }


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# Energy accuracy on {env['card']}", "",
             f"{env['date']}, driver {env['driver']}, torch {env['torch']} (CUDA {env['cuda']}), "
             f"transformers {env['transformers']}. Idle {result['idle_w']:.1f} W (counter, tick-aligned).", "",
             "Errors against a long-window counter reference (K repetitions of idle gap + load, tick to tick, "
             "idle energy of the gaps removed, idle measured tick-aligned for 1 s just before each row). `ours` = EnergyMeter window; `naive counter` = counter "
             "difference at the window edges; `ELANA` = nvmlDeviceGetPowerUsage every 100 ms, mean x duration.", "",
             "| load | K | idle W | reference J | ours (± uncertainty) | ours err | worst | naive counter err | worst | ELANA err | worst |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["accuracy"]:
        lines.append(f"| {r['load_s']} s ({r['window_s']:.3f} s) | {r['repetitions']} | {r['idle_w']:.1f} | {r['reference_j']:.2f} | {r['ours_j']:.2f} ± "
                     f"{r['ours_uncertainty_j']:.2f} | {r['ours_err_pct']:+.2f}% | {r['ours_worst_err_pct']:.2f}% | "
                     f"{r['naive_counter_err_pct']:+.2f}% | {r['naive_counter_worst_err_pct']:.2f}% | "
                     f"{r['elana_err_pct']:+.2f}% | {r['elana_worst_err_pct']:.2f}% |")
    lines += ["", "The same windows recomputed from a second, independent sampler's counter periods: with the "
              "library's edge model, and with edge periods split in proportion to their overlap (uniform).", "",
              "| load (window) | second sampler, edge model | uniform split |", "|---:|---:|---:|"]
    for r in result["accuracy"]:
        lines.append(f"| {r['load_s']} s ({r['window_s']:.3f} s) | {r['second_sampler_err_pct']:+.2f}% | "
                     f"{r['uniform_split_err_pct']:+.2f}% |")
    s = result["steady"]
    lines += ["", "Steady load (bf16 matmuls from a background thread, running on both sides of the window; the "
              "reference is the counter polled tick to tick around the window):", "",
              "| window | window avg W | counter around it | window vs counter | timeline avg W | timeline vs counter | samples/s |",
              "|---:|---:|---:|---:|---:|---:|---:|",
              f"| {s['duration_s']:.2f} s | {s['window_avg_w']:.1f} | {s['counter_around_avg_w']:.1f} | "
              f"{s['window_vs_counter_pct']:+.2f}% | {s['timeline_avg_w']:.1f} | {s['timeline_vs_counter_pct']:+.2f}% | "
              f"{s['sample_rate_hz']:.0f} |"]
    c = result["read_costs"]
    lines += ["", f"NVML costs: counter call {c['total_energy_call_s'] * 1e3:.2f} ms, instant-power field "
              f"{c['field_power_instant_s'] * 1e3:.3f} ms, both fields in one call {c['field_energy_and_power_s'] * 1e3:.3f} ms, "
              f"nvmlDeviceGetPowerUsage {c['power_usage_call_s'] * 1e3:.3f} ms. Counter update period median "
              f"{c['counter_tick_median_s'] * 1e3:.0f} ms (min {c['counter_tick_min_s'] * 1e3:.0f}, max "
              f"{c['counter_tick_max_s'] * 1e3:.0f}). Sampler read path: {result['read_path']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    load = Load()
    with EnergyMeter(devices=[0]) as meter:
        print("read costs ...", flush=True)
        costs = read_costs(handle)
        p_idle_before = idle_power(handle)
        meter.idle_power_w()
        load.run(2.0)  # warm up, then time one matmul again at working clocks
        load.calibrate()
        print("accuracy ...", flush=True)
        rows = accuracy(meter, handle, load)
        print("steady ...", flush=True)
        steady_row = steady(meter, handle, load)
        time.sleep(0.5)
        p_idle_after = idle_power(handle)
        result = {"environment": environment(handle), "idle_w": p_idle_before, "idle_after_w": p_idle_after,
                  "meter_idle_w": meter.idle_power_w(), "read_path": meter.sensors[0].read_path,
                  "sample_hz": meter.sample_hz, "method": meter.sensors[0].method,
                  "read_costs": costs, "accuracy": rows, "steady": steady_row}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "energy_accuracy.json"), "w") as f:
        json.dump(result, f, indent=2)
    text = markdown(result)
    with open(os.path.join(args.out, "energy_accuracy.md"), "w") as f:
        f.write(text)
    print(text)
    pynvml.nvmlShutdown()


if __name__ == "__main__":
    main()
