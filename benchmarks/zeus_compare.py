"""Energy of the same GPU workloads: Zeus's ZeusMonitor windows vs our EnergyMeter windows vs the board's counter.

Workloads (one row each): a steady 3 s bf16 matmul load, a 0.2 s load, a "cell" alternating 0.25 s of load
with 0.25 s of idle four times, and a decode loop (GenerationSession decode steps, Llama-3.2-1B shape, batch 1,
random bf16 weights, CUDA-graph engine). Each row runs K repetitions of (idle gap, workload) and alternates the
meter: even repetitions in a ``ZeusMonitor`` window (zeus 0.16: counter read at both synchronized edges),
odd ones in an ``EnergyMeter`` window. The reference is the board's counter
(``nvmlDeviceGetTotalEnergyConsumption``) read tick to tick over one long window around all K repetitions,
less the idle energy of the gaps (idle power tick-aligned for 1 s just before the row), divided by K.

    python benchmarks/zeus_compare.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from importlib import metadata

import pynvml
import torch

from energy_accuracy import Load, idle_power, tick  # same directory: the accuracy benchmark's load and counter reads
from elana_magic.energy import EnergyMeter

GAP_S = 0.4


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def alternating_cell(load: Load) -> None:
    for _ in range(4):
        load.run(0.25)
        time.sleep(0.25)


def decode_workload(seconds: float = 1.5):
    """Decode steps on a 1B-shape model for about ``seconds`` (passes over the same 127 positions)."""
    from elana_magic.latency import GenerationSession
    from elana_magic.models import random_model

    model = random_model("llama-3.2-1b", dtype=torch.bfloat16, device="cuda")
    session = GenerationSession(model, batch=1, prompt_len=512, gen_len=128, compile=False).open()
    session.prefill()

    def one_pass():
        session.restart_decode()
        for _ in range(session.gen_len - 1):
            session.decode_step()

    for _ in range(3):
        one_pass()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(5):
        one_pass()
    torch.cuda.synchronize()
    passes = max(1, round(seconds / ((time.perf_counter() - t) / 5)))

    def run():
        for _ in range(passes):
            one_pass()

    return run, session, f"decode {passes} x 127 steps, llama-3.2-1b shape bs1, {session.engine}"


def compare(name: str, work, reps: int, zeus, meter: EnergyMeter, handle) -> dict:
    time.sleep(0.3)
    p_idle = idle_power(handle, 1.0)
    windows = []
    ta, ea = tick(handle)
    for i in range(reps):
        time.sleep(GAP_S)
        if i % 2 == 0:
            zeus.begin_window(name)
            work()
            m = zeus.end_window(name)
            windows.append({"meter": "zeus", "energy_j": m.gpu_energy[0], "duration_s": m.time})
        else:
            with meter.window(label=name) as win:
                work()
            rep = win.report
            windows.append({"meter": "ours", "energy_j": rep.energy_j, "duration_s": rep.duration_s,
                            "uncertainty_j": rep.uncertainty_j})
    time.sleep(GAP_S)
    tb, eb = tick(handle)
    long_j = (eb - ea) / 1000.0
    outside_s = (tb - ta) - sum(w["duration_s"] for w in windows)
    reference = (long_j - p_idle * outside_s) / reps
    row = {"workload": name, "repetitions": reps, "idle_w": p_idle, "long_window_s": tb - ta, "long_window_j": long_j,
           "reference_j": reference, "windows": windows}
    for key in ("zeus", "ours"):
        mine = [w for w in windows if w["meter"] == key]
        row[f"{key}_j"] = statistics.mean(w["energy_j"] for w in mine)
        row[f"{key}_window_s"] = statistics.mean(w["duration_s"] for w in mine)
        row[f"{key}_err_pct"] = 100.0 * (row[f"{key}_j"] - reference) / reference
        row[f"{key}_worst_err_pct"] = 100.0 * max(abs(w["energy_j"] - reference) for w in mine) / reference
        row[f"{key}_spread_pct"] = 100.0 * (max(w["energy_j"] for w in mine) - min(w["energy_j"] for w in mine)) / reference
    row["zeus_vs_ours_pct"] = 100.0 * (row["zeus_j"] - row["ours_j"]) / row["ours_j"]
    row["closer_to_reference"] = "ours" if abs(row["ours_err_pct"]) <= abs(row["zeus_err_pct"]) else "zeus"
    print(f"  {name:<12} x{reps} ({row['ours_window_s']:.3f} s): ref {reference:8.2f} J  zeus {row['zeus_err_pct']:+6.2f}%"
          f"  ours {row['ours_err_pct']:+6.2f}%  zeus vs ours {row['zeus_vs_ours_pct']:+6.2f}%", flush=True)
    return row


def environment(handle) -> dict:
    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    import transformers

    return {"card": text(pynvml.nvmlDeviceGetName(handle)), "driver": text(pynvml.nvmlSystemGetDriverVersion()),
            "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "zeus": version("zeus") or version("zeus-ml"), "nvidia_ml_py": version("nvidia-ml-py"),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "power_limit_w": pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0}


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# Energy beside Zeus on {env['card']}", "",
             f"{env['date']}, driver {env['driver']}, torch {env['torch']} (CUDA {env['cuda']}), transformers "
             f"{env['transformers']}, zeus {env['zeus']}, nvidia-ml-py {env['nvidia_ml_py']}.", "",
             "Each row: K repetitions of (0.4 s idle gap, workload), measured alternately by a `ZeusMonitor` window "
             "(even repetitions) and an `EnergyMeter` window (odd). Reference: the board's counter read tick to tick "
             "over one long window around all K, less the gaps' idle energy (idle measured tick-aligned just before "
             "the row), divided by K. Errors are of the mean window against the reference; `zeus vs ours` compares "
             "the two means.", "",
             "| workload | K | window s | reference J | Zeus J | Zeus err | Zeus worst | ours J | ours err | ours worst "
             "| Zeus vs ours | closer |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['label']} | {r['repetitions']} | {r['ours_window_s']:.3f} | {r['reference_j']:.2f} | "
                     f"{r['zeus_j']:.2f} | {r['zeus_err_pct']:+.2f}% | {r['zeus_worst_err_pct']:.2f}% | {r['ours_j']:.2f} | "
                     f"{r['ours_err_pct']:+.2f}% | {r['ours_worst_err_pct']:.2f}% | {r['zeus_vs_ours_pct']:+.2f}% | "
                     f"{r['closer_to_reference']} |")
    long_rows = [r for r in result["rows"] if r["ours_window_s"] >= 1.0]
    worst = max((abs(r["zeus_vs_ours_pct"]) for r in long_rows), default=float("nan"))
    lines += ["", f"Windows of 1 s and longer: Zeus and ours agree within {worst:.2f}% (target 2%)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    from zeus.monitor import ZeusMonitor

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    load = Load()
    decode, session, decode_label = decode_workload()
    zeus = ZeusMonitor(gpu_indices=[0], cpu_indices=[])
    rows = []
    try:
        with EnergyMeter(devices=[0]) as meter:
            meter.idle_power_w()
            load.run(2.0)
            load.calibrate()
            plan = [("steady_3s", "steady 3 s matmul", lambda: load.run(3.0), 4),
                    ("short_0.2s", "0.2 s matmul", lambda: load.run(0.2), 10),
                    ("alternating", "cell: 4 x (0.25 s load, 0.25 s idle)", lambda: alternating_cell(load), 4),
                    ("decode", decode_label, decode, 4)]
            for name, label, work, reps in plan:
                row = compare(name, work, reps, zeus, meter, handle)
                row["label"] = label
                rows.append(row)
            result = {"environment": environment(handle), "rows": rows, "gap_s": GAP_S,
                      "ours_method": meter.sensors[0].method, "ours_read_path": meter.sensors[0].read_path,
                      "zeus_method": "nvmlDeviceGetTotalEnergyConsumption at both synchronized window edges "
                                     "(approx_instant_energy=False)"}
    finally:
        session.close()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "energy_zeus_compare.json"), "w") as f:
        json.dump(result, f, indent=2)
    text = markdown(result)
    with open(os.path.join(args.out, "energy_zeus_compare.md"), "w") as f:
        f.write(text)
    print(text)
    pynvml.nvmlShutdown()


if __name__ == "__main__":
    main()
