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
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    x = torch.ones(256, device="cuda")
    python_bound_loop(x)  # warm up
    rates = (25, 50, 100)
    result = {"steps": STEPS * 2, "rounds": args.rounds, "rates": {}}
    runs = {hz: {"without": [], "with": [], "reads_per_s": []} for hz in rates}
    with EnergyMeter(devices=[0]) as meter:
        meter.idle_power_w()
        read_path = meter.sensors[0].read_path
        for _ in range(args.rounds):  # rates interleaved, each paired with a run without the sampler
            for hz in rates:
                meter.sample_hz = float(hz)
                runs[hz]["without"].append(python_bound_loop(x))
                with meter.window(sync=False) as win:
                    runs[hz]["with"].append(python_bound_loop(x))
                runs[hz]["reads_per_s"].append(win.report.to_dict()["samples"] / win.report.duration_s)
    for hz in rates:
        r = runs[hz]
        ratios = [a / b for a, b in zip(r["without"], r["with"])]
        result["rates"][str(hz)] = {
            "without_s": r["without"], "with_s": r["with"],
            "median_without_s": statistics.median(r["without"]), "median_with_s": statistics.median(r["with"]),
            "speed_with_over_without": statistics.median(ratios),
            "achieved_sample_hz": statistics.median(r["reads_per_s"]),
        }
        print(f"{hz} Hz: without {statistics.median(r['without']) * 1e3:.1f} ms, with "
              f"{statistics.median(r['with']) * 1e3:.1f} ms -> {100 * statistics.median(ratios):.2f}% speed "
              f"(median of paired runs)", flush=True)
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
             f"A Python-bound loop of {STEPS * 2} tiny kernels; {args.rounds} rounds, each running every rate "
             f"once without and once with an open energy window; speed = median of the paired ratios. "
             f"Sampler read path: {read_path}.", "",
             "| sampler rate | without (median) | with (median) | speed with sampler | reads/s achieved |",
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
