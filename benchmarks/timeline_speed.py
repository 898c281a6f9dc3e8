"""How fast the kernel timeline handles a big trace: 100,000 kernel events, from file to PNG.

Builds a synthetic Chrome trace in torch.profiler's (Kineto's) format: decode steps annotated on the CPU
thread, one cudaLaunchKernel per kernel linked by correlation id, kernels of Llama-like names on two
streams. Then times, side by side in one run (median of --repeats): decoding the JSON file, building the
columns, drawing the timeline, rendering it to PNG, and (separately) the report's tables.

    python benchmarks/timeline_speed.py [--events 100000] [--out benchmarks/results]

Writes profile_timeline_speed.json and .md (machine, date, versions, timings).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

KERNELS = [  # (name, mean µs) of a Llama decode layer on an H100, roughly
    ("nvjet_tst_64x8_64x16_4x1_v_bz_splitK_TNT", 9.0),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::mul_functor<float>>", 1.5),
    ("void at::native::reduce_kernel<512, 1, at::native::MeanOps<float, float>>", 2.0),
    ("void pytorch_flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<64, 64, 256, 4>>", 6.0),
    ("void at::native::elementwise_kernel<128, 2, silu>", 1.2),
    ("void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8>", 12.0),
    ("void at::native::unrolled_elementwise_kernel<copy>", 1.0),
]


def synthetic_trace(n_kernels: int, kernels_per_step: int = 200, launch_us: float = 4.0,
                    with_memcpy: bool = True) -> dict:
    """A Kineto-format trace of ``n_kernels`` GPU events (kernels, one copy per step) in decode steps, plus launches."""
    pid, tid = 4242, 4242
    events: list[dict] = [
        {"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "python"}},
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": "thread 4242 (python)"}},
    ]
    cpu_t, gpu_t, corr, step = 1000.0, 1010.0, 1, 0
    made = 0
    while made < n_kernels:
        n = min(kernels_per_step, n_kernels - made - (1 if with_memcpy else 0))
        step_start, step_gpu = cpu_t, None
        for i in range(n):
            name, mean = KERNELS[(made + i) % len(KERNELS)]
            dur = mean * (0.8 + 0.4 * ((made + i) * 7919 % 100) / 100)
            events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": pid, "tid": tid,
                           "ts": cpu_t, "dur": 2.5, "args": {"correlation": corr, "external id": corr}})
            start = max(gpu_t, cpu_t + 3.0)
            step_gpu = start if step_gpu is None else step_gpu
            events.append({"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": start, "dur": dur,
                           "args": {"device": 0, "stream": 7, "correlation": corr}})
            gpu_t = start + dur + 0.5
            cpu_t += launch_us
            corr += 1
        if with_memcpy:
            events.append({"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoD (Device -> Device)", "pid": 0,
                           "tid": 20, "ts": gpu_t, "dur": 1.5, "args": {"device": 0, "stream": 20}})
        events.append({"ph": "X", "cat": "user_annotation", "name": f"elana:decode_step[{step}]", "pid": pid,
                       "tid": tid, "ts": step_start - 0.5, "dur": cpu_t - step_start + 1.0, "args": {}})
        events.append({"ph": "X", "cat": "gpu_user_annotation", "name": f"elana:decode_step[{step}]", "pid": 0,
                       "tid": 7, "ts": step_gpu, "dur": gpu_t - step_gpu, "args": {}})
        made += n + (1 if with_memcpy else 0)
        step += 1
        cpu_t += 20.0
    return {"schemaVersion": 1, "displayTimeUnit": "ms", "traceEvents": events}


def time_once(path: str) -> tuple[dict, int, int]:
    """One pass from the file to the PNG, each step timed."""
    from elana_magic.profile import ParsedTrace, analyze_trace, load_events
    from elana_magic.profile.timeline import Timeline

    t0 = time.perf_counter()
    events = load_events(path)
    t1 = time.perf_counter()
    parsed = ParsedTrace.from_events(events, path=path)
    parsed.columns("device")
    t2 = time.perf_counter()
    tl = Timeline(parsed)
    t3 = time.perf_counter()
    png = tl.png()
    t4 = time.perf_counter()
    analyze_trace(path, trace=parsed, hta=False)
    t5 = time.perf_counter()
    timings = {"decode_json_s": t1 - t0, "parse_s": t2 - t1, "draw_s": t3 - t2, "png_s": t4 - t3,
               "timeline_s": t4 - t1, "from_file_s": t4 - t0, "analyze_s": t5 - t4}
    return timings, len(parsed.device), len(png)


def run(n_events: int, out_dir: str | None, repeats: int = 3) -> dict:
    import statistics

    import matplotlib
    import matplotlib.figure  # noqa: F401 - imported before timing: a notebook has it loaded already

    trace = synthetic_trace(n_events)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.pt.trace.json")
        with open(path, "w") as fh:
            json.dump(trace, fh)
        size = os.path.getsize(path)
        runs = [time_once(path) for _ in range(repeats)]
    timings = {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]}
    result = {
        "benchmark": "timeline_speed", "kernel_events": runs[0][1], "trace_events": len(trace["traceEvents"]),
        "trace_bytes": size, "png_bytes": runs[0][2], "repeats": repeats, "timings_median": timings,
        "timings_all": [r[0] for r in runs], "limit_s": 3.0,
        "passed": timings["timeline_s"] < 3.0, "passed_from_file": timings["from_file_s"] < 3.0,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1min": os.getloadavg()[0]},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "matplotlib": matplotlib.__version__,
                     "numpy": __import__("numpy").__version__},
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "profile_timeline_speed.json"), "w") as fh:
            json.dump(result, fh, indent=2)
        with open(os.path.join(out_dir, "profile_timeline_speed.md"), "w") as fh:
            fh.write(markdown(result))
    return result


def markdown(r: dict) -> str:
    t = r["timings_median"]
    m = r["machine"]
    ok = lambda v: "pass" if v < r["limit_s"] else "FAIL"  # noqa: E731
    return (
        f"# Timeline speed: {r['kernel_events']:,} kernel events\n\n"
        f"{r['date']}, {m['cpu']} ({m['cores']} cores, load average {m['load_average_1min']:.1f} at the end); "
        f"python {r['versions']['python']}, matplotlib {r['versions']['matplotlib']}, numpy {r['versions']['numpy']}.\n"
        f"Synthetic Kineto-format trace ({r['trace_events']:,} events: kernels, their launch calls, step annotations; "
        f"{r['trace_bytes'] / 1e6:.1f} MB), `python benchmarks/timeline_speed.py`; median of {r['repeats']} runs.\n\n"
        "| step | seconds |\n|---|---|\n"
        f"| decode the JSON file (`json.load`) | {t['decode_json_s']:.3f} |\n"
        f"| sort events, numpy columns | {t['parse_s']:.3f} |\n"
        f"| draw the timeline (bars binned per pixel, one collection per lane and kind) | {t['draw_s']:.3f} |\n"
        f"| render to PNG | {t['png_s']:.3f} |\n"
        f"| **timeline (columns + draw + PNG)** | **{t['timeline_s']:.3f}** (limit {r['limit_s']:.0f} s: "
        f"{ok(t['timeline_s'])}) |\n"
        f"| from the file (JSON decode + timeline) | {t['from_file_s']:.3f} ({ok(t['from_file_s'])}) |\n"
        f"| tables, busy/idle, gaps, step times (for the report, not the timeline) | {t['analyze_s']:.3f} |\n"
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = run(args.events, args.out, args.repeats)
    print(markdown(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
