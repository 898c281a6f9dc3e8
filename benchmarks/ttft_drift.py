"""Does the 8B shape's eager-prefill TTFT drift with the host, and is it ours? TTFT with energy on and off, alternating.

    python benchmarks/ttft_drift.py [--preset llama-3.1-8b] [--pairs 3] [--prompt-len 512]

A paired A/B of the 8B shape on an H200 saw its TTFT move between ~20 and ~50 ms from round to round
(``paired_NVIDIA_H200.md``). This measures TTFT (``compile=False``: the prefill runs eagerly, launch-bound
at batch 1) in alternating calls with the energy sampler on and off, and after each call prints the SM
clock and the board's power from NVML, the threads alive (an ``elana-*`` thread left behind would
compete with the launches), the garbage collector's counts, and the process's CPU time over wall time.
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="llama-3.1-8b")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--prompt-len", type=int, default=512)
    args = parser.parse_args()

    import pynvml
    import torch

    from elana_magic.latency import measure_latency
    from elana_magic.models import random_model

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    print(torch.cuda.get_device_name(0), "driver", pynvml.nvmlSystemGetDriverVersion(), "torch", torch.__version__)
    model = random_model(args.preset, dtype=torch.bfloat16, device="cuda")
    for _ in range(args.pairs):
        for energy in (False, True):
            cpu, wall = time.process_time(), time.perf_counter()
            rep = measure_latency(model, phases=["ttft"], prompt_len=args.prompt_len, gen_len=2, energy=energy,
                                  compile=False, warmup=2, repeats=5, min_time=1.0, progress=False)
            share = (time.process_time() - cpu) / (time.perf_counter() - wall)
            q = sorted(rep.ttft_samples_ms)
            clock = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
            power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3
            threads = [t.name for t in threading.enumerate()]
            print(f"energy={energy!s:5} n={len(q):3} TTFT median {q[len(q) // 2]:.1f} ms, min {q[0]:.1f}, max {q[-1]:.1f},"
                  f" >30 ms: {sum(x > 30 for x in q)}; SM clock {clock} MHz, power {power:.0f} W; threads {threads};"
                  f" gc {gc.get_count()}; cpu/wall {share:.2f}; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
