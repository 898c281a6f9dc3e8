"""Latency with energy on a GPU: overhead of measuring energy, J/token against a 10-s counter window, time to result.

On a model of Llama-3.2-1B shape (random bf16 weights), prompt 512, gen 128, batch 1, in one process:

1. time to result: all three phases with energy (``measure_latency`` defaults), in a warm process;
2. overhead: TPOT with energy vs without, alternated (ratio of medians);
3. energy truth: J/token from the TPOT phase's window vs a 10-second steady decode window read straight
   from the board counter (``nvmlDeviceGetTotalEnergyConsumption``), each edge aligned to a counter tick.

    python benchmarks/latency_energy.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from elana_magic.latency import measure_latency
from elana_magic.models import random_model
from elana_magic.latency.session import GenerationSession

try:
    from _common import card_stem, environment, write_result
except ImportError:  # run as a module
    from benchmarks._common import card_stem, environment, write_result


def next_tick(nvml, handle) -> tuple[float, float]:
    """Wait for the energy counter to advance; its value (J) and the perf_counter time it was seen."""
    first = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    while True:
        value = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if value != first:
            return value / 1e3, time.perf_counter()
        time.sleep(0.0005)


def steady_decode_window(model, seconds: float, batch: int, prompt_len: int, gen_len: int) -> dict:
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        # the same decode engine as measure_latency's default on CUDA (the compiled step in a CUDA graph)
        with GenerationSession(model, batch=batch, prompt_len=prompt_len, gen_len=gen_len, compile=True) as s:
            s.prefill()
            for _ in range(gen_len - 1):  # warm
                s.decode_step()
            torch.cuda.synchronize()
            e0, t0 = next_tick(pynvml, handle)
            steps = 0
            while time.perf_counter() - t0 < seconds:
                s.restart_decode()
                for _ in range(gen_len - 1):
                    s.decode_step()
                steps += gen_len - 1
                torch.cuda.synchronize()
            t_sync = time.perf_counter()
            e1, t1 = next_tick(pynvml, handle)
            engine = s.engine
    finally:
        pynvml.nvmlShutdown()
    return {"engine": engine, "steps": steps, "energy_j": e1 - e0, "duration_s": t1 - t0,
            "tail_after_sync_s": t1 - t_sync, "j_per_step": (e1 - e0) / steps, "avg_power_w": (e1 - e0) / (t1 - t0),
            "tpot_ms": (t_sync - t0) / steps * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--preset", default="llama-3.2-1b")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--gen-len", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    env = environment()
    model = random_model(args.preset, dtype=torch.bfloat16, device="cuda")
    shape = dict(batch=args.batch, prompt_len=args.prompt_len, gen_len=args.gen_len, progress=False)
    result: dict = {"environment": env, "model": args.preset, **{k: v for k, v in shape.items() if k != "progress"}}

    measure_latency(model, **shape)                      # the process is warm after this
    t = time.perf_counter()
    rep = measure_latency(model, **shape)
    wall = time.perf_counter() - t
    result["time_to_result"] = {"wall_s": wall, "report": rep.to_dict()}
    for key in ("step_latencies_ms", "ttft_samples_ms", "tpot_samples_ms", "ttlt_samples_ms"):
        result["time_to_result"]["report"].pop(key)
    print(rep.to_text(), flush=True)
    print(f"all three phases with energy: {wall:.2f} s wall", flush=True)

    off, on, jt = [], [], []
    for _ in range(args.pairs):
        r_off = measure_latency(model, phases=["tpot"], energy=False, min_time=3.0, **shape)
        r_on = measure_latency(model, phases=["tpot"], energy=True, min_time=3.0, **shape)
        off.append(r_off.tpot_ms["median"])
        on.append(r_on.tpot_ms["median"])
        jt.append(r_on.energy["j_per_token"])
    result["overhead"] = {"tpot_off_ms": off, "tpot_on_ms": on,
                          "ratio_on_over_off": statistics.median(on) / statistics.median(off)}
    print(f"TPOT energy on/off: {result['overhead']['ratio_on_over_off']:.4f}", flush=True)

    truth = steady_decode_window(model, 10.0, args.batch, args.prompt_len, args.gen_len)
    phase_j = [rep.energy["j_per_token"]] + jt
    result["energy_truth"] = {"steady_10s": truth, "phase_j_per_token": phase_j,
                              "phase_median_j_per_token": statistics.median(phase_j),
                              "relative_difference": statistics.median(phase_j) / truth["j_per_step"] - 1}
    print(f"J/token phase {statistics.median(phase_j):.4f} vs 10-s window {truth['j_per_step']:.4f}"
          f" ({result['energy_truth']['relative_difference']:+.2%})", flush=True)

    stamp = card_stem(env)
    e = rep.energy
    lines = [f"Latency + energy, {args.preset} shape (random bf16), batch {args.batch}, prompt {args.prompt_len},"
             f" gen {args.gen_len}. {env['card']}, driver {env.get('driver')}, torch {env['torch']},"
             f" transformers {env['transformers']}, {env['date']}", "",
             "| check | measured | target |", "|---|---|---|",
             f"| all three phases with energy, warm process | {wall:.2f} s | <= 20 s |",
             f"| TPOT energy on / off (median of {args.pairs} pairs) | {result['overhead']['ratio_on_over_off']:.4f} | <= 1.01 |",
             f"| J/token: phase window vs 10-s counter window | {statistics.median(phase_j):.4f} J vs"
             f" {truth['j_per_step']:.4f} J ({result['energy_truth']['relative_difference']:+.2%}) | within 2% |",
             "", f"decode engine: measure_latency {rep.engine}, 10-s window {truth['engine']}.",
             "", f"TTFT {rep.ttft_ms['median']:.3f} ms, TPOT {rep.tpot_ms['median']:.3f} ms, TTLT"
             f" {rep.ttlt_ms['median']:.1f} ms; J/prompt {e['j_per_prompt']:.4f}, J/token {e['j_per_token']:.4f},"
             f" J/request {e['j_per_request']:.3f}; MBU {rep.roofline['mbu']:.1%}, MFU {rep.roofline['mfu']:.1%}"]
    table = "\n".join(lines)
    write_result(args.out, f"latency_energy_{stamp}", result, table)
    print(table)


if __name__ == "__main__":
    main()
