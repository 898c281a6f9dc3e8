"""Does the sampler slow the measured code? A Python-bound loop of small kernels, with and without it.

Alternates runs without and with an open energy window (the "elana-sampler" thread reading NVML at
``--hz``), side by side in one process, and reports the median speed ratio.

    python benchmarks/sampler_overhead.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time

import torch

from elana_magic.energy import EnergyMeter

STEPS = 20000


def python_bound_loop(x: torch.Tensor) -> float:
    """Many tiny kernels: launch-bound, so the host's Python speed is what is timed."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(STEPS):
        x.add_(1.0)
        x.mul_(0.5)
    torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    x = torch.ones(256, device="cuda")
    python_bound_loop(x)  # warm up
    result = {"steps": STEPS * 2, "rounds": args.rounds, "rates": {}}
    with EnergyMeter(devices=[0]) as meter:
        meter.idle_power_w()
        read_path = meter.sensors[0].read_path
        for hz in (25, 50, 100):
            meter.sample_hz = float(hz)
            without, with_sampler, samples = [], [], []
            for _ in range(args.rounds):
                without.append(python_bound_loop(x))
                with meter.window(sync=False) as win:
                    with_sampler.append(python_bound_loop(x))
                samples.append(len(win.report.timelines[0].t) / win.report.duration_s)
            ratios = [a / b for a, b in zip(without, with_sampler)]
            result["rates"][str(hz)] = {
                "without_s": without, "with_s": with_sampler,
                "median_without_s": statistics.median(without), "median_with_s": statistics.median(with_sampler),
                "speed_with_over_without": statistics.median(without) / statistics.median(with_sampler),
                "paired_ratio_median": statistics.median(ratios),
                "achieved_sample_hz": statistics.median(samples),
            }
            print(f"{hz} Hz: without {statistics.median(without) * 1e3:.1f} ms, with {statistics.median(with_sampler) * 1e3:.1f} ms"
                  f" -> {100 * result['rates'][str(hz)]['speed_with_over_without']:.2f}% speed, "
                  f"{statistics.median(samples):.0f} samples/s", flush=True)
    import pynvml
    import transformers

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)

    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    result["environment"] = {
        "card": text(pynvml.nvmlDeviceGetName(h)), "driver": text(pynvml.nvmlSystemGetDriverVersion()),
        "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    pynvml.nvmlShutdown()
    result["read_path"] = read_path
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "energy_sampler_overhead.json"), "w") as f:
        json.dump(result, f, indent=2)
    env = result["environment"]
    lines = [f"# Sampler overhead on {env['card']}", "",
             f"{env['date']}, driver {env['driver']}, torch {env['torch']} (CUDA {env['cuda']}). "
             f"A Python-bound loop of {STEPS * 2} tiny kernels, {args.rounds} alternating rounds without/with "
             f"an open energy window. Sampler read path: {read_path}.", "",
             "| sampler rate | without (median) | with (median) | speed with sampler | samples/s achieved |",
             "|---:|---:|---:|---:|---:|"]
    for hz, r in result["rates"].items():
        lines.append(f"| {hz} Hz | {r['median_without_s'] * 1e3:.1f} ms | {r['median_with_s'] * 1e3:.1f} ms | "
                     f"{100 * r['speed_with_over_without']:.2f}% | {r['achieved_sample_hz']:.0f} |")
    text_md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "energy_sampler_overhead.md"), "w") as f:
        f.write(text_md)
    print(text_md)


if __name__ == "__main__":
    main()
