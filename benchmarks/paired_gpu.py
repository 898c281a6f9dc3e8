"""Paired A/B on the GPU: the Llama-3.1-8B shape against three copies, each in its own paired call.

    python benchmarks/paired_gpu.py [--preset llama-3.1-8b] [--rounds 4] [--pairs pruned eager itself]
                                    [--suffix _x] [--out benchmarks/results]
    python benchmarks/paired_gpu.py --reanalyze paired_NVIDIA_H200.json   # verdicts again, from a run's raw JSON

The raw JSON (every step's times, ~1 MB) stays where the run wrote it, out of the tree: benchmarks/results/
keeps the Markdown table (the H200 run's JSON: ``git show 07436ca:benchmarks/results/paired_NVIDIA_H200.json``).

1. A copy with a quarter of its layers dropped: TPOT and TTFT should be lower, with intervals excluding 1.
2. A copy in another attention implementation (eager instead of sdpa).
3. The same model against an identical copy (deepcopy): "no difference beyond noise" is the right verdict.

Each pair is measured by ``measure_paired`` in alternating rounds (A B, B A, ...), energy on where NVML
exists, the CUDA-graph engine without Inductor (compile=False) so that no compile time enters the run.
Writes JSON + markdown to ``--out`` (named after the GPU) and prints the verdicts last.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _pruned(model, keep_fraction: float = 0.75):
    out = copy.deepcopy(model)
    keep = int(len(out.model.layers) * keep_fraction)
    out.model.layers = out.model.layers[:keep]
    out.config.num_hidden_layers = keep
    if getattr(out.config, "layer_types", None):
        out.config.layer_types = out.config.layer_types[:keep]
    return out


def _eager(model):
    out = copy.deepcopy(model)
    out.set_attn_implementation("eager")
    return out


def _rows(name: str, comp) -> list[str]:
    lines = []
    for figure in ("TTFT", "TPOT", "J/token"):
        try:
            r = comp.ratio(figure)
        except (KeyError, ValueError):
            continue
        if r.ratio is None:
            continue
        ci = f"{r.ci_low:.4f}-{r.ci_high:.4f}" if r.ci_low is not None else "-"
        per_round = ", ".join(f"{x:.3f}" for x in r.round_ratios) if r.round_ratios else "-"
        lines.append(f"| {name} | {figure} | {r.ratio:.4f} | {ci} | {per_round} | {r.verdict} |")
    return lines


PAIRS = {"pruned": ("quarter of layers dropped", _pruned), "eager": ("eager attention", _eager),
         "itself": ("itself (identical copy)", copy.deepcopy)}


def write(comparisons: dict, meta: dict, out: str, suffix: str = "") -> str:
    """JSON (every report with its samples) + markdown (the verdicts) under ``out``; returns the table."""
    lines = [row for name, comp in comparisons.items() for row in _rows(name, comp)]
    notes = [f"- {n}" for comp in comparisons.values() for n in comp.notes]
    stem = os.path.join(out, "paired_" + meta["card"].replace(" ", "_") + suffix)
    os.makedirs(out, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "comparisons": {k: json.loads(c.to_json()) for k, c in comparisons.items()}}, f,
                  indent=1, default=str)
    table = "\n".join(["| pair | figure | ratio | 95% CI | ratio per round | verdict |",
                       "|---|---|---:|---:|---|---|", *lines])
    with open(stem + ".md", "w") as f:
        f.write(f"# Paired A/B on {meta['card']} ({meta['date']})\n\n{json.dumps(meta)}\n\n{table}\n\n"
                + ("Notes of the comparisons:\n\n" + "\n".join(notes) + "\n" if notes else ""))
    return table


def reanalyze(path: str, out: str) -> str:
    """The comparisons of a saved run, recomputed by this code from the reports' samples (no GPU needed)."""
    from elana_magic.core.compare import compare
    from elana_magic.core.envelope import report_from_dict

    with open(path) as f:
        saved = json.load(f)
    meta = saved["meta"] | {"analysis": "recomputed from the saved samples by this code",
                            "analysed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    comparisons = {name: compare([report_from_dict(r) for r in c["reports"]], labels=c["labels"])
                   for name, c in saved["comparisons"].items()}
    return write(comparisons, meta, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="llama-3.1-8b")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--gen-len", type=int, default=65)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS), help="which copies to compare")
    parser.add_argument("--suffix", default="", help="appended to the results' file names")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--reanalyze", metavar="JSON", help="recompute the verdicts of a saved run (no measuring)")
    args = parser.parse_args()
    if args.reanalyze:
        print(reanalyze(args.reanalyze, args.out))
        return

    import torch
    import transformers

    import elana_magic
    from elana_magic.latency import measure_paired
    from elana_magic.models import random_model

    base = random_model(args.preset, dtype=torch.bfloat16 if args.device == "cuda" else torch.float32,
                        device=args.device)
    comparisons = {}
    for name, edit in (PAIRS[key] for key in args.pairs):
        other = edit(base)
        comparisons[name] = measure_paired([base, other], labels=["original", name], rounds=args.rounds,
                                           phases=["ttft", "tpot"], prompt_len=args.prompt_len, gen_len=args.gen_len,
                                           min_time=args.min_time, compile=False, progress=False)
        del other
        if args.device == "cuda":
            torch.cuda.empty_cache()

    card = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    meta = {"card": card, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "elana_magic": elana_magic.__version__, "preset": args.preset, "rounds": args.rounds,
            "prompt_len": args.prompt_len, "gen_len": args.gen_len, "pairs": args.pairs}
    try:
        import pynvml

        pynvml.nvmlInit()
        meta["driver"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # noqa: BLE001 - the driver is context, not a result
        pass
    print(write(comparisons, meta, args.out, args.suffix))


if __name__ == "__main__":
    main()
