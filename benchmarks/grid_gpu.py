"""A workload grid on the GPU: 3 x 3 cells of the Llama-3.2-1B shape with energy, plus an out-of-memory cell.

    python benchmarks/grid_gpu.py [--batch 1 8 32] [--prompt-len 128 512 2048] [--gen-len 128] [--out benchmarks/results]

1. ``measure_latency`` with lists (a ``LatencyGridReport``) on a random bf16 model of Llama-3.2-1B shape,
   energy on where a sensor exists (NVML): every cell's TTFT/TPOT/TTLT, J/token, tokens/J, MBU/MFU,
   the engine that ran (compiled variants: new / reused / fell back), the grid's time to result.
2. Measured peak memory per phase (the allocator's peak, allocated and reserved, and NVML's used memory)
   against the analytic model + cache, for every cell.
3. An out-of-memory cell: the Llama-3.1-8B shape at a batch whose cache alone exceeds the free memory
   (from ``size.largest_fit``), beside batch 1, which fits; the grid marks it and goes on.
4. ``largest_fit`` for the 1B shape at the grid's longest context, now with the measured activation peak.

Writes JSON + markdown to ``--out`` (named after the GPU) and prints a short table last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _gb(n) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def _driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # noqa: BLE001 - context, not a result
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--prompt-len", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--gen-len", type=int, nargs="+", default=[128])
    parser.add_argument("--oom-prompt-len", type=int, default=2048)
    parser.add_argument("--no-energy", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    import torch

    from elana_magic.latency import measure_grid, measure_latency
    from elana_magic.latency.roofline import device_name
    from elana_magic.models import random_model
    from elana_magic.size import largest_fit

    if not torch.cuda.is_available():
        print("grid_gpu.py needs a CUDA GPU", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    gpu = device_name(device)
    energy = False if args.no_energy else None

    # 1-2. the 3 x 3 grid of the 1B shape
    model = random_model("llama-3.2-1b", dtype=torch.bfloat16, device=device)
    t0 = time.perf_counter()
    grid = measure_latency(model, batch=args.batch, prompt_len=args.prompt_len, gen_len=args.gen_len, energy=energy)
    grid_s = time.perf_counter() - t0
    memory = []
    for rep in grid.reports:
        if rep is None:
            continue
        for p in (rep.memory or {}).get("phases", []):
            memory.append({"batch": rep.batch, "prompt_len": rep.prompt_len, "gen_len": rep.gen_len, **p})
    fit_1b = largest_fit(model, seq_len=max(args.prompt_len) + max(args.gen_len))
    del model
    torch.cuda.empty_cache()

    # 3. an out-of-memory cell of the 8B shape, beside one that fits
    big = random_model("llama-3.1-8b", dtype=torch.bfloat16, device=device)
    context = args.oom_prompt_len + max(args.gen_len)
    fit_8b = largest_fit(big, seq_len=context)
    too_big = max(2, 2 * fit_8b.answer + 1)
    oom_grid = measure_grid(big, batch=[1, too_big], prompt_len=[args.oom_prompt_len], gen_len=[max(args.gen_len)],
                            energy=False, phases=["ttft"])
    del big
    torch.cuda.empty_cache()

    import datetime

    import transformers

    result = {
        "benchmark": "grid_gpu", "device": gpu, "driver": _driver(), "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "grid": grid.to_dict() | {"reports": None}, "grid_wall_s": grid_s,
        "cells": grid.cells, "memory_per_phase": memory,
        "largest_fit_1b": fit_1b.to_dict(),
        "out_of_memory": {"model": "llama-3.1-8b shape", "largest_fit": fit_8b.to_dict(), "batch_tried": too_big,
                          "cells": oom_grid.cells, "largest_batch_that_fit": oom_grid.largest_batch_that_fit},
    }
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, "grid_gpu_" + gpu.replace(" ", "_"))
    with open(base + ".json", "w") as f:
        json.dump(json.loads(grid.to_json()) | {k: v for k, v in result.items() if k != "grid"}, f, indent=2,
                  default=str)
    lines = [f"# Latency grid on {gpu}: Llama-3.2-1B shape (random bf16 weights)", "",
             f"{gpu}, driver {result['driver']}, torch {result['torch']}, transformers {result['transformers']},"
             f" {result['date']}", "",
             f"grid time to result: {grid_s:.0f} s for {len(grid.cells)} cells (engines: {', '.join(grid.engines)})", "",
             "```", grid.to_text(), "```", "",
             "## Peak memory per phase (allocator, allocated) vs analytic model + cache", "",
             "| batch | prompt | phase | analytic | measured peak | reserved | NVML used | difference |",
             "|---|---|---|---|---|---|---|---|"]
    for m in memory:
        lines.append(f"| {m['batch']} | {m['prompt_len']} | {m['phase']} | {_gb(m['analytic_bytes'])} |"
                     f" {_gb(m['measured_peak_bytes'])} | {_gb(m['reserved_peak_bytes'])} |"
                     f" {_gb(m['nvml_used_bytes'])} | {_gb(m['activation_bytes'])} |")
    lines += ["", "## Out of memory: Llama-3.1-8B shape", "", "```", oom_grid.to_text(), "```", "",
              "## Largest fit", "", "```", fit_1b.to_text(), "", fit_8b.to_text(), "```"]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(oom_grid.to_text())
    print()
    print(grid.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
