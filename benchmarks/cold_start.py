"""Cold start of the compiled decode engine: regional compilation (one compiled decoder block shared by every
layer) vs today's whole-model compile, side by side in one run, each in a fresh process.

* ``first_step``: Llama-3.1-8B shape (random bf16 weights), batch 1, prompt 512, gen 128: the wall time of the
  first call to the compiled step (``GenerationSession.compile_s``: tracing + code generation + the call), the
  whole session open (prefill, warm-up, CUDA-graph capture, eager-vs-graph logit check), then TPOT of that engine
  (``measure_latency``, phase tpot, in the same process: the compiled code is reused).
* ``three_phases``: Llama-3.2-1B shape, batch 1: ``measure_latency`` of TTFT, TPOT and TTLT with energy, twice in
  the same process: the first call is the cold one (a new process, a new model), the second the warm one
  (a notebook cell run again).

Each case runs in a new Python process with its own empty Inductor cache folder (``TORCHINDUCTOR_CACHE_DIR``);
the 1B regional case then runs once more in a new process over the cache folder the first one filled ("warm disk":
Inductor's FX graph and AOTAutograd caches skip code generation; dynamo still traces).

    python benchmarks/cold_start.py --out benchmarks/results

``--cpu`` runs, without a GPU, only the compile itself: the first call of one compiled decode step (no CUDA graph)
on a narrow model of Llama-3.2-1B depth (16 layers, hidden 256, fp32), regional vs whole, each in a new process
(results: ``latency_cold_start_cpu.md``). It shows what one shared block saves in tracing and code generation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    from _common import card_stem, environment, write_result
except ImportError:  # run as a module
    from benchmarks._common import card_stem, environment, write_result

T_PROCESS = time.perf_counter()


NARROW_1B = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2,
             "vocab_size": 1024, "head_dim": 64}


def cpu_step(spec: dict) -> dict:
    """First call of one compiled decode step on CPU (regional or whole), after an eager prefill."""
    import torch
    from transformers import StaticCache

    from elana_magic.latency.session import (_cache_kwarg, _compile_counters, _compiled_logits, _recompile_room,
                                             regional_compiled, repeated_blocks)
    from elana_magic.models import preset_config, random_model

    model = random_model(preset_config(spec["preset"], **NARROW_1B), dtype=torch.float32)
    kw, blocks = _cache_kwarg(model), repeated_blocks(model)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, 32), generator=gen)
    token = torch.randint(0, model.config.vocab_size, (1, 1), generator=gen)

    def step(compiled: bool):
        cache = StaticCache(config=model.config, max_cache_len=40)
        args = {kw: cache, "use_cache": True}
        with torch.inference_mode():
            model(input_ids=ids, **args)
            if not compiled:
                return model(input_ids=token, **args).logits
            if spec["mode"] == "regional":
                with regional_compiled(blocks, cache):
                    return model(input_ids=token, **args).logits
            return _compiled_logits()(model, {"input_ids": token, **args})

    eager = step(False)
    before = _compile_counters()
    t = time.perf_counter()
    with _recompile_room(8 + 2 * len(blocks)):
        logits = step(True)
    first = time.perf_counter() - t
    return {"layers": model.config.num_hidden_layers, "compile_s": first,
            "compile_frames": _compile_counters()["frames"] - before["frames"],
            "rel_err": ((logits - eager).norm() / eager.norm()).item()}


def child(spec: dict) -> dict:
    import torch

    t_import = time.perf_counter() - T_PROCESS
    from elana_magic.latency import GenerationSession, measure_latency
    from elana_magic.models import random_model

    out: dict = {**spec, "import_s": t_import}
    if spec["case"] == "cpu_step":
        out.update(cpu_step(spec))
        out["process_s"] = time.perf_counter() - T_PROCESS
        return out
    t = time.perf_counter()
    model = random_model(spec["preset"], dtype=torch.bfloat16, device="cuda")
    torch.cuda.synchronize()
    out["model_s"] = time.perf_counter() - t
    mode = spec["mode"]
    if spec["case"] == "first_step":
        t = time.perf_counter()
        with GenerationSession(model, batch=1, prompt_len=512, gen_len=128, compile=mode) as s:
            out.update(open_s=time.perf_counter() - t, compile_s=s.compile_s, engine=s.engine, compile_mode=s.compile_mode,
                       compile_frames=s.compile_frames, rel_err=s.rel_err, compile_tol=s.compile_tol, note=s.note)
        t = time.perf_counter()
        rep = measure_latency(model, phases=["tpot"], batch=1, prompt_len=512, gen_len=128, energy=False,
                              progress=False, min_time=2.0, compile=mode)
        out.update(tpot_ms=rep.tpot_ms["median"], tpot_engine=rep.engine, tpot_call_s=time.perf_counter() - t,
                   mbu=rep.roofline.get("mbu"))
    else:
        for call in (1, 2):
            t = time.perf_counter()
            rep = measure_latency(model, batch=1, prompt_len=512, gen_len=128, progress=False, compile=mode)
            out[f"call{call}_s"] = time.perf_counter() - t
            out[f"call{call}_tpot_ms"] = rep.tpot_ms["median"]
            out[f"call{call}_engine"] = rep.engine
            out[f"call{call}_notes"] = rep.notes
            out[f"call{call}_energy"] = bool(rep.energy)
    out["process_s"] = time.perf_counter() - T_PROCESS
    return out


def run_child(spec: dict, cache_dir: str, timeout: float) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache_dir}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - t
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**spec, "error": (proc.stderr or proc.stdout).strip().splitlines()[-5:], "wall_s": wall}
    return {**json.loads(lines[-1]), "wall_s": wall}


def run_environment(cpu: bool = False) -> dict:
    import platform

    import torch  # noqa: F401 - capture_environment reads the running torch's version

    env = environment("cpu" if cpu else "cuda:0")
    if cpu:
        env["card"] = f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    return env


def _f(value, fmt=".1f") -> str:
    return "-" if value is None else format(value, fmt)


def cpu_markdown(result: dict) -> str:
    env, rows = result["environment"], result["rows"]
    lines = [f"# First call of a compiled decode step, regional vs whole, on {env['card']}", "",
             f"{env['date']}, torch {env['torch']}, transformers {env['transformers']}. Llama-3.2-1B depth (16 layers) "
             f"at narrow width ({', '.join(f'{k} {v}' for k, v in NARROW_1B.items())}), fp32, batch 1, one decode step after a "
             "32-token eager prefill, static cache of 40. Each row a new process; `empty` = a new empty Inductor cache "
             "folder, `warm disk` = the folder the row above filled. No CUDA graph here: only the compile. On a shared CPU the "
             "seconds vary from run to run; the ratio and the frame count are the point.", "",
             "| compile | disk cache | first compiled call s | frames compiled | rel err vs eager | process s |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['disk']} | error: {' '.join(r['error'])[-200:]} |")
            continue
        lines.append(f"| {r['mode']} | {r['disk']} | {r['compile_s']:.1f} | {r['compile_frames']} | {r['rel_err']:.1e} | "
                     f"{r['process_s']:.1f} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    env, rows = result["environment"], result["rows"]
    lines = [f"# Cold start of the compiled decode engine on {env['card']}", "",
             f"{env['date']}, driver {env.get('driver')}, torch {env['torch']} (CUDA {env['cuda']}), transformers "
             f"{env['transformers']}. Random bf16 weights, batch 1, prompt 512, gen 128. Each row a new process; "
             "`empty` = a new empty Inductor cache folder, `warm disk` = the folder the row above filled.", "",
             "## First call to the compiled step (Llama-3.1-8B shape)", "",
             "| compile | disk cache | first compiled call s | frames compiled | session open s | engine | "
             "check rel err (tol) | TPOT ms | MBU | process s |",
             "|---|---|---:|---:|---:|---|---|---:|---:|---:|"]
    for r in rows:
        if r["case"] != "first_step":
            continue
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['disk']} | error: {' '.join(r['error'])[-200:]} |")
            continue
        lines.append(f"| {r['mode']} | {r['disk']} | {_f(r['compile_s'])} | {r['compile_frames']} | {_f(r['open_s'])} | "
                     f"{r['engine']} | {_f(r['rel_err'], '.2e')} ({_f(r['compile_tol'], '.3f')}) | {_f(r['tpot_ms'], '.3f')} | "
                     f"{_f(r['mbu'] and 100 * r['mbu'])}% | {_f(r['process_s'])} |")
    lines += ["", "## All three phases with energy (Llama-3.2-1B shape), `measure_latency` wall time", "",
              "| compile | disk cache | cold: 1st call s | warm: 2nd call s | TPOT ms (1st, 2nd) | engine | energy | process s |",
              "|---|---|---:|---:|---|---|---|---:|"]
    for r in rows:
        if r["case"] != "three_phases":
            continue
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['disk']} | error: {' '.join(r['error'])[-200:]} |")
            continue
        lines.append(f"| {r['mode']} | {r['disk']} | {_f(r['call1_s'])} | {_f(r['call2_s'])} | "
                     f"{_f(r['call1_tpot_ms'], '.3f')}, {_f(r['call2_tpot_ms'], '.3f')} | {r['call1_engine']} | "
                     f"{r['call1_energy']} | {_f(r['process_s'])} |")
    lines += ["", "## Targets", ""]
    for key, text in result["targets"].items():
        lines.append(f"- {key}: {text}")
    return "\n".join(lines) + "\n"


def targets(rows: list[dict]) -> dict:
    def get(case, mode, disk):
        return next((r for r in rows if r["case"] == case and r["mode"] == mode and r["disk"] == disk
                     and "error" not in r), None)

    out = {}
    reg8, whole8 = get("first_step", "regional", "empty"), get("first_step", "whole", "empty")
    reg1, whole1 = get("three_phases", "regional", "empty"), get("three_phases", "whole", "empty")
    if reg8:
        ok = reg8["compile_s"] is not None and reg8["compile_s"] <= 10
        out["8B first compiled call <= 10 s"] = (f"{'met' if ok else 'NOT met'}: {_f(reg8['compile_s'])} s regional"
                                                 + (f" vs {_f(whole8['compile_s'])} s whole" if whole8 else ""))
    if reg1:
        out["1B three phases with energy, cold <= 20 s"] = f"{'met' if reg1['call1_s'] <= 20 else 'NOT met'}: {reg1['call1_s']:.1f} s" + (
            f" (whole-model compile: {whole1['call1_s']:.1f} s)" if whole1 else "")
        out["1B three phases with energy, warm <= 10 s"] = f"{'met' if reg1['call2_s'] <= 10 else 'NOT met'}: {reg1['call2_s']:.1f} s" + (
            f" (whole-model compile: {whole1['call2_s']:.1f} s)" if whole1 else "")
    for name, reg, whole, key in (("8B", reg8, whole8, "tpot_ms"), ("1B", reg1, whole1, "call2_tpot_ms")):
        if reg and whole and reg.get(key) and whole.get(key):
            ratio = reg[key] / whole[key]
            out[f"{name} TPOT regional <= 1.03 x whole"] = (f"{'met' if ratio <= 1.03 else 'NOT met'}: {ratio:.3f} "
                                                            f"({reg[key]:.3f} vs {whole[key]:.3f} ms)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per child process")
    parser.add_argument("--skip-whole-8b", action="store_true", help="skip the slowest case (8B whole-model compile)")
    parser.add_argument("--cpu", action="store_true", help="no GPU: time only the compile of one step on CPU")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child)), default=str), flush=True)
        return
    env = run_environment(args.cpu)
    root = tempfile.mkdtemp(prefix="elana-cold-")
    plan = [("first_step", "llama-3.1-8b", "regional", "reg8"),
            ("first_step", "llama-3.1-8b", "whole", "whole8"),
            ("three_phases", "llama-3.2-1b", "regional", "reg1"), ("three_phases", "llama-3.2-1b", "regional", "reg1"),
            ("three_phases", "llama-3.2-1b", "whole", "whole1")]
    if args.skip_whole_8b:
        plan = [p for p in plan if p[3] != "whole8"]
    if args.cpu:
        plan = [("cpu_step", "llama-3.2-1b", "regional", "reg"), ("cpu_step", "llama-3.2-1b", "regional", "reg"),
                ("cpu_step", "llama-3.2-1b", "whole", "whole")]
    rows, used = [], set()
    for case, preset, mode, folder in plan:
        disk = "warm disk" if folder in used else "empty"
        used.add(folder)
        spec = {"case": case, "preset": preset, "mode": mode, "disk": disk}
        row = run_child(spec, os.path.join(root, folder), args.timeout)
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
    result = {"environment": env, "rows": rows, "targets": {} if args.cpu else targets(rows)}
    stamp = "cpu" if args.cpu else card_stem(env)
    text = cpu_markdown(result) if args.cpu else markdown(result)
    write_result(args.out, f"latency_cold_start_{stamp}", result, text)
    print(text)


if __name__ == "__main__":
    main()
