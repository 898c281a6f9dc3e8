"""TTFT on the prefill engine against plain transformers' eager prefill, in separate calls of one process.

    python benchmarks/prefill_engine.py [--presets llama-3.1-8b llama-3.2-1b] [--calls 5] [--out DIR]

For each model shape (random bf16 weights, batch 1, prompt 512): ``measure_latency(phases=["ttft"])``
called ``--calls`` times with the default engine (``prefill="auto"``: the prefill captured in a CUDA graph,
compiled like decode, checked against eager) and with ``prefill="eager"``, each with energy off and on,
alternating, all in one process. The spread of a setting is max/min of its calls' medians (issue 24:
within 3%). Then one TPOT call on the default engine: its median and MBU against the card's datasheet
bandwidth. Writes JSON (every call) and markdown under ``--out``; prints a table last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _call(model, prompt_len: int, engine: str, energy: bool) -> dict:
    from elana_magic.latency import measure_latency

    start = time.perf_counter()
    rep = measure_latency(model, phases=["ttft"], prompt_len=prompt_len, gen_len=2, prefill=engine, energy=energy,
                          progress=False)
    d = rep.to_dict()
    return {"engine": engine, "energy": energy, "ran": d["engines"]["prefill"], "median_ms": d["ttft_ms"]["median"],
            "n": d["ttft_ms"]["n"], "j_per_prompt": (d.get("energy") or {}).get("j_per_prompt"),
            "wall_s": round(time.perf_counter() - start, 2), "notes": rep.notes}


def measure_shape(preset: str, calls: int, prompt_len: int, gen_len: int) -> dict:
    import torch

    from elana_magic.latency import measure_latency
    from elana_magic.models import random_model

    model = random_model(preset, dtype=torch.bfloat16, device="cuda")
    rows = []
    for i in range(calls):
        for engine in ("auto", "eager"):
            for energy in ((False, True) if i % 2 == 0 else (True, False)):
                rows.append(_call(model, prompt_len, engine, energy))
                print(preset, rows[-1]["engine"], "energy" if energy else "no energy", rows[-1]["ran"],
                      f"{rows[-1]['median_ms']:.2f} ms", flush=True)
    tpot = measure_latency(model, phases=["tpot"], prompt_len=prompt_len, gen_len=gen_len, energy=False,
                           progress=False).to_dict()
    del model
    torch.cuda.empty_cache()
    return {"preset": preset, "calls": rows,
            "tpot": {"median_ms": tpot["tpot_ms"]["median"], "n": tpot["tpot_ms"]["n"], "engine": tpot["engines"],
                     "mbu": (tpot.get("roofline") or {}).get("mbu"),
                     "decode_step_bytes": (tpot.get("roofline") or {}).get("decode_step_bytes")}}


def summary(shape: dict) -> list[list[str]]:
    out = []
    for engine in ("auto", "eager"):
        for energy in (False, True):
            meds = [r["median_ms"] for r in shape["calls"] if r["engine"] == engine and r["energy"] == energy]
            ran = {r["ran"] for r in shape["calls"] if r["engine"] == engine}
            out.append([shape["preset"], f"{engine} ({'/'.join(sorted(ran))})", "on" if energy else "off",
                        " ".join(f"{m:.2f}" for m in meds), f"{sorted(meds)[len(meds) // 2]:.2f}",
                        f"{max(meds) / min(meds):.3f}"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["llama-3.1-8b", "llama-3.2-1b"])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--gen-len", type=int, default=128)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()

    import torch

    from elana_magic.core.environment import capture_environment

    shapes = [measure_shape(p, args.calls, args.prompt_len, args.gen_len) for p in args.presets]
    env = capture_environment(torch.device("cuda"))
    card = torch.cuda.get_device_name(0)
    header = ["shape", "prefill engine (ran)", "energy", "TTFT medians of the calls (ms)", "median", "max/min"]
    rows = [row for s in shapes for row in summary(s)]
    decode = [[s["preset"], f"{s['tpot']['median_ms']:.3f} ms", str(s["tpot"]["engine"]),
               "-" if s["tpot"]["mbu"] is None else f"{s['tpot']['mbu']:.1%}"] for s in shapes]
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "prefill_engine_" + card.replace(" ", "_"))
    with open(stem + ".json", "w") as f:
        json.dump({"card": card, "environment": env, "prompt_len": args.prompt_len, "shapes": shapes}, f, indent=1)
    table = "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows])
    dtable = "\n".join("| " + " | ".join(r) + " |" for r in
                       [["shape", "TPOT (batch 1)", "engines", "MBU"], ["---"] * 4, *decode])
    with open(stem + ".md", "w") as f:
        f.write(f"# Prefill engine vs eager prefill: {card}\n\n`benchmarks/prefill_engine.py`, "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {env.get('torch')}, transformers {env.get('transformers')}, "
                f"driver {env.get('driver')}; random bf16 weights, batch 1, prompt {args.prompt_len}; "
                f"{args.calls} separate calls per setting in one process.\n\n{table}\n\n"
                f"Decode on the default engine (gen {args.gen_len}):\n\n{dtable}\n")
    print(table)
    print(dtable)


if __name__ == "__main__":
    main()
