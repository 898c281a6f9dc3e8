"""Time to result of one latency cell: today's method (each phase on its own) vs shared runs.

    python benchmarks/time_to_result.py [--rounds 3] [--prompt-len 64] [--gen-len 32] [--threads 1] [--out benchmarks/results]

On the embedded SmolLM2-135M (real weights), batch 1, energy off (no per-phase window: that is when one
loop of requests may serve every phase). Each round runs the old method (``shared_runs=False``: TTFT,
TPOT and TTLT loops, each with its own warm-ups) and the new one (``shared_runs=True``: one loop of
requests, each phase stopped by its own rule) back to back, alternating which goes first, so that load
from other users of the machine falls on both. Same stopping rule for both (min 5 runs and 1 s per
phase, or earlier once the median's 95% CI is within 1%; the time cap is raised so that a loaded machine
does not cut either short). Writes JSON + markdown, prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _phase_figures(report) -> dict:
    out = {}
    for key in ("ttft_ms", "tpot_ms", "ttlt_ms"):
        s = report.data[key]
        half = None
        if s.get("ci95_low") is not None and s["median"]:
            half = (s["ci95_high"] - s["ci95_low"]) / 2 / s["median"]
        out[key] = {"median": s["median"], "n": s["n"], "ci95_rel_halfwidth": half}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--gen-len", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a machine shared with other jobs, OpenMP threads that"
                             " wait for a descheduled peer make every op slower, for both methods alike)")
    parser.add_argument("--max-time", type=float, default=3600.0,
                        help="a phase's time cap (default 3600 s: far above the rule's default of 20 s, so that"
                             " under load both methods still reach the same minimum counts)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    import torch

    from elana_magic.latency import measure_latency
    from elana_magic.models import default_model

    torch.set_num_threads(args.threads)
    loaded = default_model()
    model = loaded.model
    runs = []
    for i in range(args.rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for shared in order:
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            rep = measure_latency(model, batch=1, prompt_len=args.prompt_len, gen_len=args.gen_len, energy=False,
                                  progress=False, shared_runs=shared, max_time=args.max_time)
            wall = time.perf_counter() - t0
            # the run's wall time in units of its own request time: what it cost, whatever the load was then
            in_requests = wall / (rep.data["ttlt_ms"]["median"] / 1e3) if rep.data["ttlt_ms"]["median"] else None
            runs.append({"round": i, "method": "shared" if shared else "separate", "wall_s": wall,
                         "wall_in_requests": in_requests,
                         "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0],
                         "stopped": rep.data["stopped"], **_phase_figures(rep)})
            print(f"round {i} {runs[-1]['method']:8s} {wall:6.1f} s", flush=True)

    def agg(method: str) -> dict:
        mine = [r for r in runs if r["method"] == method]
        res = {"wall_s_median": statistics.median(r["wall_s"] for r in mine),
               "wall_s": [round(r["wall_s"], 2) for r in mine],
               "wall_in_requests_median": statistics.median(r["wall_in_requests"] for r in mine),
               "wall_in_requests": [round(r["wall_in_requests"], 1) for r in mine]}
        for key in ("ttft_ms", "tpot_ms", "ttlt_ms"):
            res[key] = {"median_of_medians": statistics.median(r[key]["median"] for r in mine),
                        "n": [r[key]["n"] for r in mine],
                        "ci95_rel_halfwidth": [r[key]["ci95_rel_halfwidth"] for r in mine]}
        return res

    summary = {"separate": agg("separate"), "shared": agg("shared")}
    ratio = summary["shared"]["wall_s_median"] / summary["separate"]["wall_s_median"]
    per_round = [a["wall_s"] / b["wall_s"] for a, b in
                 ((next(r for r in runs if r["round"] == i and r["method"] == "shared"),
                   next(r for r in runs if r["round"] == i and r["method"] == "separate")) for i in range(args.rounds))]
    ratio_in_requests = summary["shared"]["wall_in_requests_median"] / summary["separate"]["wall_in_requests_median"]
    result = {
        "benchmark": "time_to_result", "model": loaded.label, "batch": 1, "prompt_len": args.prompt_len,
        "gen_len": args.gen_len, "energy": False, "rounds": args.rounds, "max_time_s": args.max_time,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "note": "shared machine: other engineers' jobs ran at the same time; old and new runs alternate"},
        "runs": runs, "summary": summary, "shared_over_separate_wall": ratio,
        "shared_over_separate_per_round": per_round, "shared_over_separate_in_requests": ratio_in_requests,
    }
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, "time_to_result_cpu")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=2)
    lines = [f"# Time to result: separate phases vs shared runs ({loaded.label})", "",
             f"batch 1, prompt {args.prompt_len}, gen {args.gen_len}, energy off, {args.rounds} rounds alternating"
             f" old/new, {args.threads} torch thread(s), on a shared {os.cpu_count()}-core machine (load average 1 min: "
             f"{min(r['load_avg_1m_before'] for r in runs):.1f} to {max(r['load_avg_1m_after'] for r in runs):.1f}).", "",
             "| method | wall (median) | runs (s) | runs (in request times) | TTFT median / n / CI± |"
             " TPOT median / n / CI± | TTLT median / n / CI± |",
             "|---|---|---|---|---|---|---|"]
    for method in ("separate", "shared"):
        s = summary[method]

        def cell(key):
            half = [h for h in s[key]["ci95_rel_halfwidth"] if h is not None]
            ci = f"{statistics.median(half):.1%}" if half else "n<6"
            return f"{s[key]['median_of_medians']:.2f} ms / {'/'.join(map(str, s[key]['n']))} / {ci}"

        lines.append(f"| {method} | {s['wall_s_median']:.1f} s | {', '.join(map(str, s['wall_s']))} | "
                     f"{', '.join(map(str, s['wall_in_requests']))} | "
                     f"{cell('ttft_ms')} | {cell('tpot_ms')} | {cell('ttlt_ms')} |")
    lines += ["", f"shared / separate wall time: {ratio:.2f} (medians); per round"
              f" {', '.join(f'{x:.2f}' for x in per_round)}; in units of each run's own request time"
              f" (which cancels the load of the moment): {ratio_in_requests:.2f}", "",
              "CI± = half the median's 95% interval over the median (median over the rounds; n<6: too few samples"
              " to bracket, as with today's 5 requests)."]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
