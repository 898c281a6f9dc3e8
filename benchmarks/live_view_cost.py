"""Does the live view slow what it shows? TPOT with the live view on vs off, in paired alternating runs.

Each round runs ``measure_latency(phases=("tpot",))`` twice, once with a live view (the "elana-live"
thread redrawing the status line and a power trace) and once without, the order alternating from
round to round so that load from other processes falls on both. The live view here displays nothing
(no notebook) but does all its work: it builds the status HTML and the power-trace SVG and sets the
widgets' values a few times a second. Where no sensor exists (a CPU) the power trace is fed a
synthetic 50 Hz series growing as a sampler's would, so the drawing cost is measured too.

    python benchmarks/live_view_cost.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import time

import torch

from elana_magic.core.live import LiveView
from elana_magic.latency import measure_latency
from elana_magic.models import random_model


class BenchLiveView(LiveView):
    """The live view, with a synthetic power series where the run has no sensor."""

    def phase(self, name, power=None):
        if power is None:  # no sensor, or a warm-up (outside the energy window)
            t0 = time.perf_counter()

            def power():
                n = int((time.perf_counter() - t0) * 50) + 2
                t = [t0 + i / 50 for i in range(n)]
                return [("synthetic", t, [100.0 + 20.0 * math.sin(i / 7) for i in range(n)])]

        return super().phase(name, power=power)


def redraw_cost_us(n: int = 200) -> float:
    """CPU time of one redraw (status line + power SVG of a 60 s, 50 Hz series), on this thread."""
    t0 = time.perf_counter() - 60
    series = [("synthetic", [t0 + i / 50 for i in range(3000)], [100.0 + (i % 50) for i in range(3000)])]
    view = LiveView("elana latency", show=False)
    view.start()
    view.stop()  # no thread: redraw here, timed
    import ipywidgets as widgets

    view._status, view._plot = widgets.HTML(), widgets.HTML()
    view.phase("TPOT", power=lambda: series)
    c = time.thread_time()
    for _ in range(n):
        view.redraw()
    cost = (time.thread_time() - c) / n * 1e6
    view.close_widgets()
    return cost


ENGINES: set[str] = set()


def tpot_ms(model, live: bool, args) -> tuple[float, int]:
    view = BenchLiveView("elana latency", interval_s=args.interval, show=False).start() if live else None
    try:
        rep = measure_latency(model, phases=("tpot",), prompt_len=args.prompt_len, gen_len=args.gen_len,
                              energy=None if args.device != "cpu" else False, warmup=1, repeats=3, min_time=args.min_time,
                              progress=view if view is not None else False)
    finally:
        if view is not None:
            view.stop()
            view.close_widgets()
    ENGINES.add(rep.engine)
    return rep.tpot_ms["median"], (view.redraws if view is not None else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--rounds", type=int, default=60, help="paired rounds (at least 2)")
    parser.add_argument("--interval", type=float, default=0.2,
                        help="Live redraw period (s); 0.2, the fastest it allows, is the worst case (default 0.5 in use).")
    parser.add_argument("--preset", default="tiny-llama")  # Python-bound decode: the worst case for a second thread
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--gen-len", type=int, default=64)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU run (then energy is measured"
                        " and the live view draws the real sampler's power series)")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (an interval needs two pairs)")

    torch.manual_seed(0)
    torch.set_num_threads(1)  # one core for the model: the live thread competes for the rest, as in a notebook
    dtype = torch.bfloat16 if args.device != "cpu" else torch.float32
    model = random_model(args.preset, dtype=dtype, device=args.device)
    load_before = os.getloadavg()
    pairs, redraws = [], []
    tpot_ms(model, False, args)  # warm the process (allocator, kernels) before pairing
    for i in range(args.rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {}
        for live in order:
            got[live], n = tpot_ms(model, live, args)
            if live:
                redraws.append(n)
        pairs.append((got[False], got[True]))
        print(f"round {i:2d}: off {got[False]:.3f} ms  on {got[True]:.3f} ms  ratio {got[True] / got[False]:.4f}",
              flush=True)
    load_after = os.getloadavg()
    ratios = [on / off for off, on in pairs]
    med = statistics.median(ratios)
    rng = random.Random(0)
    boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    med_ci = [boot[50], boot[1949]]
    redraw_us = redraw_cost_us()
    mean = statistics.fmean(ratios)
    sem = statistics.stdev(ratios) / math.sqrt(len(ratios))
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "model": f"random {args.preset}", "prompt_len": args.prompt_len,
        "gen_len": args.gen_len, "rounds": args.rounds,
        "tpot_off_ms_median": statistics.median(p[0] for p in pairs),
        "tpot_on_ms_median": statistics.median(p[1] for p in pairs),
        "ratio_on_over_off_median": med, "ratio_median_95ci_bootstrap": med_ci,
        "redraw_cpu_us": redraw_us, "live_interval_s": args.interval, "ratio_mean": mean, "ratio_mean_95ci": [mean - 1.96 * sem, mean + 1.96 * sem],
        "live_redraws_per_run_median": statistics.median(redraws),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "pairs_ms": pairs, "engines": sorted(ENGINES), "dtype": str(dtype).removeprefix("torch."),
        "power_series": "synthetic 50 Hz (no sensor)" if args.device == "cpu" else "the energy sampler's (NVML)",
    }
    os.makedirs(args.out, exist_ok=True)
    name = "live_view_cost" + ("" if args.device == "cpu" else f"_{torch.cuda.get_device_name().replace(' ', '_')}")
    result["device"] = args.device if args.device == "cpu" else torch.cuda.get_device_name()
    if args.device != "cpu":
        import pynvml
        import transformers

        pynvml.nvmlInit()
        result["driver"], result["transformers"] = pynvml.nvmlSystemGetDriverVersion(), transformers.__version__
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(result, f, indent=1)
    lines = [
        f"# Live view cost: TPOT with the live view on vs off ({result['device']})",
        "",
        f"{result['date']}, {result['machine']}, {result['cpus']} CPUs, torch {result['torch']}"
        + (f", driver {result['driver']}, transformers {result['transformers']}" if "driver" in result else "") + "; "
        f"{result['model']} ({result['dtype']}), prompt {args.prompt_len}, gen {args.gen_len}, "
        f"{'/'.join(result['engines'])} decode, {args.rounds} paired rounds "
        f"(order alternating). The live view redraws its status line and a power-trace SVG every {args.interval} s "
        f"(the fastest it allows; 0.5 s in use), from {result['power_series']} power series.",
        "",
        f"Machine load (1/5/15 min load average) before: {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f},"
        f" after: {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}.",
        "",
        "| | TPOT median |",
        "|---|---:|",
        f"| live view off | {result['tpot_off_ms_median']:.3f} ms |",
        f"| live view on | {result['tpot_on_ms_median']:.3f} ms |",
        "",
        f"Paired ratio on/off: median {med:.4f} (bootstrap 95% CI {med_ci[0]:.4f} - {med_ci[1]:.4f}), "
        f"mean {mean:.4f} (95% CI {result['ratio_mean_95ci'][0]:.4f} - {result['ratio_mean_95ci'][1]:.4f}); "
        f"{result['live_redraws_per_run_median']:.0f} redraws per run (every {args.interval} s).",
        "",
        f"The live thread's own work, timed apart (thread CPU time): {redraw_us:.0f} µs per redraw with a 60 s,"
        f" 50 Hz power series, i.e. {redraw_us * 1e-6 / args.interval:.3%} of one core at this redraw rate and "
        f"{redraw_us * 1e-6 / 0.5:.3%} at the default 0.5 s.",
    ]
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
