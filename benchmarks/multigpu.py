"""Two GPUs: a model spread with device_map, ngpus=2 replicas, and CUDA_VISIBLE_DEVICES naming one GPU.

On a model of Llama-3.1-8B shape (random bf16 weights; ``--preset`` to change), prompt 512, gen 128:

1. ``device_map``: the model dispatched by accelerate over GPUs 0 and 1 (balanced), all three phases
   with energy: latency, each GPU's energy share (shares sum to the total) and peak memory per GPU;
   beside it the same model on GPU 0 alone with the same (eager) decode, for the cost of the split;
2. ``ngpus=2``: two replicas through torchrun + NCCL, batch 2 (1 per rank): per-rank and combined
   latency, energy summed over the ranks;
3. ``CUDA_VISIBLE_DEVICES=<second GPU>``: a TPOT run in a child process sees one GPU, and NVML meters
   that physical GPU (UUIDs compared).

    python benchmarks/multigpu.py --out benchmarks/results

Writes ``multigpu_<card>.json`` and ``.md`` under ``--out`` and prints a short table last.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from elana_magic.latency import measure_latency
from elana_magic.models import random_model, spread_over_gpus

try:
    from _common import card_stem, environment, write_result
except ImportError:  # run as a module
    from benchmarks._common import card_stem, environment, write_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summary(rep) -> dict:
    d = rep.to_dict()
    d.pop("step_latencies_ms", None)
    return d


def medians(d: dict) -> dict:
    return {k: (d.get(f"{k}_ms") or {}).get("median") for k in ("ttft", "tpot", "ttlt")}


def visible_second_gpu(prompt_len: int, gen_len: int) -> dict:
    """TPOT with energy in a child that sees only the second GPU; which physical GPU NVML metered."""
    second = str(torch.cuda.get_device_properties(1).uuid).removeprefix("GPU-")
    script = (
        "import json, torch\n"
        "from elana_magic.energy import nvml\n"
        "from elana_magic.latency import measure_latency\n"
        "from elana_magic.models import random_model\n"
        "m = random_model('llama-3.2-1b', dtype=torch.bfloat16, device='cuda')\n"
        f"rep = measure_latency(m, phases=['tpot'], prompt_len={prompt_len}, gen_len={gen_len}, energy=True, progress=False)\n"
        "lib = nvml.acquire()\n"
        "(_, handle, _), = nvml.visible_handles(lib, [0])\n"
        "uuid = nvml._text(lib.nvmlDeviceGetUUID(handle))\n"
        "nvml.release()\n"
        "print(json.dumps({'visible': torch.cuda.device_count(), 'torch_uuid': str(torch.cuda.get_device_properties(0).uuid),"
        " 'nvml_uuid': uuid, 'devices': rep.devices, 'tpot_ms': rep.tpot_ms['median'],"
        " 'j_per_token': rep.energy['j_per_token'], 'per_device': rep.energy['per_device']}))\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": f"GPU-{second}",
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:]}
    got = json.loads(out.stdout.strip().splitlines()[-1])
    got["second_gpu_uuid"] = second
    got["nvml_metered_second_gpu"] = got["nvml_uuid"].removeprefix("GPU-") == second
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--preset", default="llama-3.1-8b")
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--gen-len", type=int, default=128)
    args = parser.parse_args()
    if torch.cuda.device_count() < 2:
        sys.exit("benchmarks/multigpu.py needs two visible GPUs")
    env = environment()
    env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    shape = dict(prompt_len=args.prompt_len, gen_len=args.gen_len, progress=False)
    result: dict = {"environment": env, "model": args.preset, **{k: v for k, v in shape.items() if k != "progress"}}

    # 1. the same model on GPU 0 alone (eager decode, as a split model decodes), then spread over 0 and 1
    model = random_model(args.preset, dtype=torch.bfloat16, device="cuda:0")
    t = time.perf_counter()
    single = measure_latency(model, energy=True, cuda_graph=False, compile=False, **shape)
    result["single_gpu_eager"] = {"wall_s": time.perf_counter() - t, "report": summary(single)}
    print(single.to_text(), flush=True)
    model = spread_over_gpus(model, [0, 1])
    result["device_map"] = {"hf_device_map": {k: str(v) for k, v in model.hf_device_map.items()}}
    t = time.perf_counter()
    split = measure_latency(model, energy=True, **shape)
    result["device_map"].update(wall_s=time.perf_counter() - t, report=summary(split))
    print(split.to_text(), flush=True)

    # 2. two replicas from a saved folder (the split model freed first)
    folder = tempfile.mkdtemp(prefix="elana-bench-")
    try:
        model.save_pretrained(folder)
        model = split = single = None
        gc.collect()
        torch.cuda.empty_cache()
        t = time.perf_counter()
        replicas = measure_latency(folder, ngpus=2, batch=2, energy=True, **shape)
        result["ngpus_2"] = {"wall_s": time.perf_counter() - t, "report": summary(replicas)}
        print(replicas.to_text(), flush=True)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)

    # 3. CUDA_VISIBLE_DEVICES naming the second GPU
    result["visible_second_gpu"] = visible_second_gpu(args.prompt_len, args.gen_len)

    stamp = card_stem(env)

    def ms(v):
        return f"{v:.3f}" if v is not None else "-"

    def j(v):
        return f"{v:.4f}" if v is not None else "-"

    rows = []
    s, m = result["single_gpu_eager"]["report"], result["device_map"]["report"]
    r = result["ngpus_2"]["report"]
    for name, d in (("GPU 0 alone (eager)", s), ("device_map over 0+1", m), ("ngpus=2 combined (batch 2)", r)):
        med, e = medians(d), d["energy"]
        rows.append(f"| {name} | {ms(med['ttft'])} | {ms(med['tpot'])} | {ms(med['ttlt'])} | {j(e['j_per_prompt'])}"
                    f" | {j(e['j_per_token'])} | {j(e['j_per_request'])} |")
    for rank in r["ranks"]:
        med, e = medians(rank), rank["energy"]
        rows.append(f"| ngpus=2 rank {rank['rank']} ({rank['device']}) | {ms(med['ttft'])} | {ms(med['tpot'])} |"
                    f" {ms(med['ttlt'])} | {j(e['j_per_prompt'])} | {j(e['j_per_token'])} | {j(e['j_per_request'])} |")
    shares = ", ".join(f"{row['device']} {row['share']:.1%}" for row in m["energy"]["per_device"]
                       if row.get("share") is not None)
    peaks = ", ".join(f"{dev} {p['max'] / 1e9:.2f} GB" for dev, p in (m.get("peak_memory") or {}).items())
    share_sum = sum(row["j_per_token"] or 0.0 for row in m["energy"]["per_device"])
    v = result["visible_second_gpu"]
    lines = [f"Two GPUs, {args.preset} shape (random bf16), prompt {args.prompt_len}, gen {args.gen_len}."
             f" {' + '.join(env['gpus'])}, driver {env.get('driver')}, torch {env['torch']},"
             f" transformers {env['transformers']}, {env['date']}", "",
             "| run | TTFT ms | TPOT ms | TTLT ms | J/prompt | J/token | J/request |",
             "|---|---|---|---|---|---|---|", *rows, "",
             f"device_map energy shares: {shares}; per-GPU J/token sum {j(share_sum)} vs total"
             f" {j(m['energy']['j_per_token'])}; peak memory {peaks}; engine {m['engine']}.",
             f"CUDA_VISIBLE_DEVICES=<second GPU>: {v.get('visible')} GPU visible, NVML metered the second GPU:"
             f" {v.get('nvml_metered_second_gpu')} (J/token {j(v.get('j_per_token'))})."]
    table = "\n".join(lines)
    write_result(args.out, f"multigpu_{stamp}", result, table)
    print(table)


if __name__ == "__main__":
    main()
