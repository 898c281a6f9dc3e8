"""Decode TPOT side by side: our default engine vs HF generate() eager vs generate() static cache + torch.compile.

Ours: the default (static cache, Inductor-compiled decode step captured in our CUDA graph; regional
compilation: one compiled decoder block for every layer) and the same graph engine without compile
(``compile=False``); ``--with-whole`` adds today's whole-model compile (``compile="whole"``),
``--with-eager`` our eager engine.
``--time-to-result`` also times all three phases with energy on the first configuration, twice in a row
on the same model, after the TPOT runs of that shape (so the compiled step is reused).

Models of Llama-3.2-1B and Llama-3.1-8B shape (random bf16 weights), prompt 512, gen 128, batch 1 and 16,
all in one process on one GPU. TPOT is the median decode step: ours from CUDA events per step
(measure_latency), generate()'s from a CUDA event recorded in a logits processor at every step (the
optimum-benchmark method; its step includes generate()'s own per-step Python work, as a user sees it).

    python benchmarks/decode_paths.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from elana_magic.latency import measure_latency
from elana_magic.models import random_model
from elana_magic.latency.session import compile_tolerance

try:
    from _common import card_stem, environment, write_result
except ImportError:  # run as a module
    from benchmarks._common import card_stem, environment, write_result


class StepEvents(LogitsProcessor):
    """Records a CUDA event each time generate() produces logits (once per generated token)."""

    def __init__(self):
        self.events: list[torch.cuda.Event] = []

    def __call__(self, input_ids, scores):
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        self.events.append(ev)
        return scores


def generate_tpot(model, ids, gen_len: int, runs: int, warmup: int, **kwargs) -> dict:
    mask = torch.ones_like(ids)
    steps: list[float] = []
    for i in range(warmup + runs):
        timer = StepEvents()
        model.generate(ids, attention_mask=mask, max_new_tokens=gen_len, min_new_tokens=gen_len,
                       do_sample=False, logits_processor=LogitsProcessorList([timer]), **kwargs)
        torch.cuda.synchronize()
        if i >= warmup:
            steps += [a.elapsed_time(b) for a, b in zip(timer.events, timer.events[1:])]
    return {"tpot_ms": statistics.median(steps), "n_steps": len(steps)}


def ours(model, batch: int, args, **kwargs):
    return measure_latency(model, phases=["tpot"], batch=batch, prompt_len=args.prompt_len, gen_len=args.gen_len,
                           energy=False, progress=False, min_time=2.0, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--configs", nargs="+",
                        default=["llama-3.2-1b:1", "llama-3.2-1b:16", "llama-3.1-8b:1", "llama-3.1-8b:16"],
                        help="PRESET:BATCH, run in this order (consecutive ones of a preset share the model)")
    parser.add_argument("--with-eager", action="store_true", help="also time our eager engine")
    parser.add_argument("--with-whole", action="store_true", help="also time our whole-model compiled engine")
    parser.add_argument("--time-to-result", action="store_true")
    parser.add_argument("--time-to-result-calls", type=int, default=2)
    parser.add_argument("--suffix", default="")
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--gen-len", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-compile", action="store_true", help="skip generate() static + torch.compile")
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 64
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 64
    env = environment()
    rows: list[dict] = []
    extra: dict = {}
    groups: list[tuple[str, list[int]]] = []
    for config in args.configs:
        preset, batch = config.split(":")
        if groups and groups[-1][0] == preset:
            groups[-1][1].append(int(batch))
        else:
            groups.append((preset, [int(batch)]))
    for preset, batches in groups:
        model = random_model(preset, dtype=torch.bfloat16, device="cuda")
        for batch in batches:
            gen = torch.Generator().manual_seed(0)
            ids = torch.randint(0, model.config.vocab_size, (batch, args.prompt_len), generator=gen).cuda()
            row = {"model": preset, "batch": batch, "prompt_len": args.prompt_len, "gen_len": args.gen_len}
            t = time.perf_counter()
            rep = ours(model, batch, args)
            d = rep.to_dict()
            row.update(ours_engine=rep.engine, ours_tpot_ms=rep.tpot_ms["median"], ours_mbu=rep.roofline["mbu"],
                       tpot_floor_ms=rep.roofline["tpot_floor_ms"], ours_wall_s=time.perf_counter() - t,
                       ours_notes=rep.notes, ours_check_rel_err=d.get("graph_check_rel_err"),
                       ours_check_max_abs_diff=d.get("graph_check_max_abs_diff"),
                       ours_check_rel_tol=compile_tolerance(model), peak_bw=rep.roofline.get("peak_bw_bytes_per_s"),
                       peak_source=rep.roofline.get("peak_source"))
            t = time.perf_counter()
            rep = ours(model, batch, args)
            row.update(ours_second_tpot_ms=rep.tpot_ms["median"], ours_second_wall_s=time.perf_counter() - t,
                       ours_second_engine=rep.engine, ours_second_notes=rep.notes)
            graph = ours(model, batch, args, compile=False)
            row.update(ours_graph_engine=graph.engine, ours_graph_tpot_ms=graph.tpot_ms["median"],
                       ours_graph_mbu=graph.roofline["mbu"], ours_graph_notes=graph.notes)
            if args.with_whole:
                t = time.perf_counter()
                whole = ours(model, batch, args, compile="whole")
                row.update(ours_whole_engine=whole.engine, ours_whole_tpot_ms=whole.tpot_ms["median"],
                           ours_whole_mbu=whole.roofline["mbu"], ours_whole_wall_s=time.perf_counter() - t)
            if args.with_eager:
                row["ours_eager_tpot_ms"] = ours(model, batch, args, cuda_graph=False).tpot_ms["median"]
            if args.time_to_result and not extra and preset == "llama-3.2-1b":
                for i in range(args.time_to_result_calls):
                    t = time.perf_counter()
                    r = measure_latency(model, batch=batch, prompt_len=args.prompt_len, gen_len=args.gen_len,
                                        progress=False)
                    extra[f"all_phases_energy_wall_s_call{i + 1}"] = time.perf_counter() - t
                extra.update(time_to_result_config=f"{preset}:{batch}", time_to_result_engine=r.engine,
                             time_to_result_energy=r.energy, time_to_result_notes=r.notes)
                print(json.dumps(extra, default=str), flush=True)
            model.generation_config.disable_compile = True
            row["generate_eager_tpot_ms"] = generate_tpot(model, ids, args.gen_len, args.runs, 1)["tpot_ms"]
            if not args.skip_compile:
                model.generation_config.disable_compile = False
                t = time.perf_counter()
                g = generate_tpot(model, ids, args.gen_len, args.runs, 3, cache_implementation="static")
                row["generate_static_compile_tpot_ms"] = g["tpot_ms"]
                row["compile_warmup_wall_s"] = time.perf_counter() - t
            generate = {k: v for k, v in row.items() if k.startswith("generate_") and k.endswith("_tpot_ms")}
            fastest = min([*generate.values(), row["ours_tpot_ms"]])
            row["ours_over_fastest"] = row["ours_tpot_ms"] / fastest
            rows.append(row)
            print(json.dumps(row), flush=True)
            write(args, env, rows, extra)
            if hasattr(model, "_cache"):
                del model._cache
            torch.cuda.empty_cache()
        del model
        gc.collect()
        torch._dynamo.reset()
        torch.cuda.empty_cache()
    print(write(args, env, rows, extra))


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def write(args, env: dict, rows: list[dict], extra: dict) -> str:
    """Save the rows so far (json + markdown table); return the table."""
    stamp = card_stem(env) + args.suffix
    lines = [f"Decode TPOT (median step, ms), prompt {args.prompt_len}, gen {args.gen_len}, bf16 random weights.",
             f"{env['card']}, driver {env.get('driver')}, torch {env['torch']}, transformers {env['transformers']},"
             f" {env['date']}", "",
             "| model | batch | ours default (engine) | ours 2nd call | ours whole-model compile | ours graph, no compile |"
             " ours eager | generate eager | generate static+compile | floor | ours default / fastest | MBU ours default |"
             " check rel err | 1st call wall s |",
             "|" + "---|" * 14]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {_ms(r['ours_tpot_ms'])} ({r['ours_engine']}) |"
                     f" {_ms(r.get('ours_second_tpot_ms'))} | {_ms(r.get('ours_whole_tpot_ms'))} |"
                     f" {_ms(r.get('ours_graph_tpot_ms'))} |"
                     f" {_ms(r.get('ours_eager_tpot_ms'))} | {_ms(r['generate_eager_tpot_ms'])} |"
                     f" {_ms(r.get('generate_static_compile_tpot_ms'))} | {_ms(r['tpot_floor_ms'])} |"
                     f" {r['ours_over_fastest']:.3f} | {r['ours_mbu']:.1%} |"
                     f" {'-' if r.get('ours_check_rel_err') is None else format(r['ours_check_rel_err'], '.2e')} |"
                     f" {r['ours_wall_s']:.1f} |")
    for key, value in extra.items():
        if key.startswith("all_phases"):
            lines.append(f"\n{key} ({extra.get('time_to_result_config')}, engine {extra.get('time_to_result_engine')}):"
                         f" {value:.2f}")
    table = "\n".join(lines)
    write_result(args.out, f"latency_decode_paths_{stamp}", {"environment": env, "rows": rows, "time_to_result": extra},
                 table)
    return table


if __name__ == "__main__":
    main()
