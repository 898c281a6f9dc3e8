"""Does the profiler's trace tell the truth about decode? Trace step time vs measured TPOT, side by side.

For a Llama-3.2-1B-shape model (random weights, bf16) on one GPU, for each decode engine (CUDA graph,
eager), in one run:

1. TPOT from ``elana_magic.latency.measure_latency`` (CUDA events per step, no profiler);
2. ``profile_phase(..., phase="tpot", steps=gen_len-1)``: the per-step decode time read from the trace's
   kernel events ((last kernel end - first kernel start) / steps), and the profiler's overhead (wall time
   of the same steps with and without the profiler);
3. checks that the trace is what Perfetto reads: valid JSON, complete kernel events on (device, stream)
   lanes, annotations per step.

Then a TTLT profile (prefill + decode) whose timeline PNG goes to the README, and, in a fresh process, a
CUDA-graph profile with the old pre-capture CUPTI workaround, to show why it is not used on new CUDA.

    python benchmarks/profile_decode.py --out DIR [--prompt-len 512] [--gen-len 64]

Writes DIR/profile_gpu.json and .md, timeline PNGs and the CUDA-graph decode trace (.json.gz).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def environment() -> dict:
    import torch
    import transformers

    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
           "python": platform.python_version(), "gpu": torch.cuda.get_device_name(0), "driver": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        env["driver"] = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - the record says why
        env["driver"] = f"unknown ({type(exc).__name__})"
    return env


def check_trace(path: str) -> dict:
    """What Perfetto needs: valid JSON, complete kernel events on (device pid, stream tid) lanes."""
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as fh:
        data = json.load(fh)
    events = data["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    complete = all(e.get("ph") == "X" and isinstance(e.get("ts"), (int, float)) and isinstance(e.get("dur"), (int, float))
                   and "pid" in e and "tid" in e for e in kernels)
    lanes = sorted({(e["pid"], e["tid"]) for e in kernels}, key=str)
    graph_launches = {(e.get("args") or {}).get("correlation") for e in events
                      if e.get("cat") == "cuda_runtime" and "GraphLaunch" in str(e.get("name"))}
    return {"valid_json": True, "events": len(events), "kernel_events": len(kernels), "kernels_complete": complete,
            "stream_lanes": [f"device {p} stream {t}" for p, t in lanes],
            "graph_kernels": sum(1 for e in kernels if (e.get("args") or {}).get("correlation") in graph_launches),
            "step_annotations": sum(1 for e in events if e.get("cat") == "user_annotation"
                                    and str(e.get("name", "")).startswith("elana:decode_step["))}


def compare(model, engine: str, prompt_len: int, gen_len: int, trace_dir: str) -> dict:
    from elana_magic.latency import measure_latency
    from elana_magic.profile import profile_phase

    graph = engine == "cuda-graph"
    lat = measure_latency(model, phases=("tpot",), prompt_len=prompt_len, gen_len=gen_len, energy=False,
                          cuda_graph=graph, repeats=10, min_time=1.0, progress=False).to_dict()
    rep = profile_phase(model, "tpot", prompt_len=prompt_len, gen_len=gen_len, steps=gen_len - 1, cuda_graph=graph,
                        out=trace_dir, label=f"llama-3.2-1b-tpot-{engine}", gzip=True, hta=False)
    st = rep.step_time
    tpot = lat["tpot_ms"]
    on_gpu = st["gpu_mean_us"] is not None
    trace_ms = (st["gpu_mean_us"] if on_gpu else st["cpu_mean_us"]) / 1e3
    return {
        "trace_basis": "GPU kernel events" if on_gpu else "CPU step annotations (no GPU kernels)",
        "engine": rep.engine, "latency_engine": lat.get("cuda_graph"),
        "tpot_ms": tpot, "trace_step_ms": trace_ms,
        "trace_median_period_ms": st["gpu_median_period_us"] / 1e3 if st["gpu_median_period_us"] else None,
        "trace_median_busy_span_ms": st["gpu_median_span_us"] / 1e3 if st["gpu_median_span_us"] else None,
        "diff_vs_tpot_mean": trace_ms / tpot["mean"] - 1 if trace_ms else None,
        "within_10pct": trace_ms is not None and abs(trace_ms / tpot["mean"] - 1) <= 0.10,
        "profiler_overhead": rep.overhead,
        "busy_idle": rep.busy_idle, "launch_gaps": rep.launch_gaps,
        "breakdown": rep.breakdown, "top_kernels": rep.kernel_table[:8], "notes": rep.notes,
        "trace": check_trace(rep.trace_path), "trace_path": rep.trace_path,
    }, rep


_WARMUP_CHILD = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
from elana_magic.models import random_model
from elana_magic.profile import profile_phase
m = random_model("smollm2-135m", dtype=torch.bfloat16, device="cuda")
rep = profile_phase(m, "tpot", prompt_len=128, gen_len=9, steps=8, out={out!r}, label="warmup-{flag}",
                    graph_warmup={flag}, hta=False)
print("RESULT", json.dumps({{"graph_warmup": {flag}, "engine": rep.engine, "kernel_events": rep.counts["gpu"],
                            "notes": rep.notes}}))
"""


def warmup_experiment(out: str) -> list[dict]:
    """The pre-capture CUPTI workaround on vs off, each in a fresh process (it changes process-wide state)."""
    results = []
    for flag in (False, True):
        code = _WARMUP_CHILD.format(root=ROOT, out=out, flag=flag)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        results.append(json.loads(line[-1][7:]) if line else
                       {"graph_warmup": flag, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
    return results


def markdown(r: dict) -> str:
    e = r["environment"]
    s = r["settings"]
    lines = ["# Profiler trace vs measured TPOT: Llama-3.2-1B shape, decode\n",
             f"{e['date']}, {e['gpu']}, driver {e['driver']}, torch {e['torch']} (CUDA {e['cuda']}), "
             f"transformers {e['transformers']}. Random weights, bf16, batch {s['batch']}, prompt {s['prompt_len']}, "
             f"{s['gen_len']} tokens ({s['gen_len'] - 1} decode steps). `python benchmarks/profile_decode.py`.\n",
             "| engine | TPOT measured (mean / median) | step time from trace kernels | diff | within 10% | "
             "profiler overhead (wall, same steps) | GPU busy | kernel events | graph kernels |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in r["comparisons"]:
        t = c["tpot_ms"]
        o = c["profiler_overhead"]
        lines.append(
            f"| {c['engine']} | {t['mean']:.3f} / {t['median']:.3f} ms | {c['trace_step_ms']:.3f} ms | "
            f"{c['diff_vs_tpot_mean']:+.1%} | {'yes' if c['within_10pct'] else 'NO'} | {o['overhead']:+.1%} "
            f"({o['unprofiled_s'] * 1e3:.1f} vs {o['profiled_s'] * 1e3:.1f} ms) | {c['busy_idle']['busy_share']:.1%} | "
            f"{c['trace']['kernel_events']} on {', '.join(c['trace']['stream_lanes'])} | {c['trace']['graph_kernels']} |")
    lines.append("\nPre-capture CUPTI workaround (`_init_for_cuda_graphs`), smollm2-135m shape, 8 graph decode steps, "
                 "fresh process each:\n")
    lines.append("| workaround | kernel events | notes |\n|---|---|---|")
    for w in r["graph_warmup_experiment"]:
        lines.append(f"| {w['graph_warmup']} | {w.get('kernel_events', w.get('error'))} | {'; '.join(w.get('notes', []))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from elana_magic.models import random_model
    from elana_magic.profile import profile_phase
    from elana_magic.profile.timeline import Timeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--preset", default="llama-3.2-1b", help="a shape from elana_magic.models (tiny-llama to dry-run)")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script itself")
    args = ap.parse_args(argv)
    on_gpu = args.device == "cuda"
    os.makedirs(args.out, exist_ok=True)
    traces = tempfile.mkdtemp(prefix="elana-traces-")
    model = random_model(args.preset, dtype=torch.bfloat16 if on_gpu else None, device=args.device)
    comparisons, reports = [], {}
    for engine in ("cuda-graph", "eager") if on_gpu else ("eager",):
        row, rep = compare(model, engine, args.prompt_len, args.gen_len, traces)
        comparisons.append(row)
        reports[engine] = rep
        print(f"{engine}: TPOT {row['tpot_ms']['mean']:.3f} ms, trace {row['trace_step_ms']:.3f} ms "
              f"({row['diff_vs_tpot_mean']:+.1%}), overhead {row['profiler_overhead']['overhead']:+.1%}", flush=True)
    first = comparisons[0]["engine"]
    shutil.copy(reports[first].trace_path, os.path.join(args.out, f"trace_tpot_{first}.pt.trace.json.gz"))

    # one decode step, zoomed: what the graph runs
    graph = reports[first]
    tl = Timeline(graph.trace, spans=graph.steps, title=f"{args.preset} shape, one {first} decode step")
    name, a, b = tl.phases[len(tl.phases) // 2]
    tl.set_range(a - 0.05 * (b - a), b + 0.05 * (b - a))
    with open(os.path.join(args.out, "timeline_tpot_step.png"), "wb") as fh:
        fh.write(tl.png())

    ttlt = profile_phase(model, "ttlt", prompt_len=args.prompt_len, gen_len=16, out=traces, label="llama-3.2-1b-ttlt",
                         hta=False)
    where = torch.cuda.get_device_name(0) if on_gpu else "CPU"
    tl = Timeline(ttlt.trace, spans=ttlt.steps,
                  title=f"{args.preset} shape on {where}: prefill {args.prompt_len} tokens + 15 {ttlt.engine} decode steps")
    with open(os.path.join(args.out, "timeline_ttlt.png"), "wb") as fh:
        fh.write(tl.png())
    del model
    if on_gpu:
        torch.cuda.empty_cache()

    result = {"benchmark": "profile_decode", "environment": environment() if on_gpu else {"gpu": "none (dry run)"},
              "settings": {"model": f"{args.preset} shape, random weights", "dtype": "bfloat16", "batch": 1,
                           "prompt_len": args.prompt_len, "gen_len": args.gen_len},
              "comparisons": [{k: v for k, v in c.items() if k != "trace_path"} for c in comparisons],
              "ttlt": {"step_time": ttlt.step_time, "steps": ttlt.steps[:3], "busy_idle": ttlt.busy_idle,
                       "breakdown": ttlt.breakdown, "notes": ttlt.notes},
              "graph_warmup_experiment": warmup_experiment(traces) if on_gpu else []}
    with open(os.path.join(args.out, "profile_gpu.json"), "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    md = markdown(result) if on_gpu else json.dumps(result["comparisons"], indent=1, default=str)[:3000]
    with open(os.path.join(args.out, "profile_gpu.md"), "w") as fh:
        fh.write(md)
    print(md)
    return 0 if all(c["within_10pct"] for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
