"""The projection checked between two cards: each H100 result projected to the H200 and each H200 result to
the H100 (``elana_magic.project``), against what was measured there. No GPU needed: it reads the results
already in benchmarks/results/.

    .venv/bin/python benchmarks/projection_check.py    # writes benchmarks/results/projection_check.{json,md}

Pairs: the same model shape, batch, prompt and generation length, decode engine and software versions
(torch 2.11.0+cu130, transformers 5.17.0, driver 580.159.04 on both cards):

* ``latency_energy_*.json`` hold whole latency reports (``time_to_result.report``, read back with
  ``report_from_dict``): their TTFT (the same prefill path on both cards) pairs across the two cards; their
  decode engines differ (the H100's run compiled the step, the H200's did not), so their TPOTs pair with
  the decode-paths rows of the same engine instead.
* ``latency_decode_paths_*.json`` hold the decode figures per shape and engine (median TPOT, the floor, the
  peak); each becomes a latency report of its TPOT alone (the bytes per step = floor x peak bandwidth).
  H200 run 6 replaces run 4's 8B batch-16 row (as the results' index says).

Those files hold no per-step samples, so the projection's range collapses to the median (the TTFT pair has
the summary's p90 as its slow end); the error is of the median.
"""

from __future__ import annotations

import argparse
import json
import os

from _common import RESULTS, write_result

from elana_magic.core.envelope import report_from_dict
from elana_magic.latency.projection import project
from elana_magic.reports import KINDS  # noqa: F401 - every kind registered

FILES = {
    "energy_h100": "latency_energy_NVIDIA_H100_80GB_HBM3.json",
    "energy_h200": "latency_energy_NVIDIA_H200.json",
    "paths_h100": "latency_decode_paths_NVIDIA_H100_run2.json",
    "paths_h200": "latency_decode_paths_NVIDIA_H200_run4.json",
    "paths_h200_b16": "latency_decode_paths_NVIDIA_H200_run6.json",
}
CARD = {"NVIDIA H100 80GB HBM3": "H100", "NVIDIA H200": "H200"}


def _load(key: str) -> dict:
    with open(os.path.join(RESULTS, FILES[key]), encoding="utf-8") as f:
        return json.load(f)


def full_report(key: str):
    """A latency_energy file's report, read back as a LatencyReport."""
    data = _load(key)
    return report_from_dict({"kind": "latency", **data["time_to_result"]["report"]}), FILES[key]


def path_report(key: str, model: str, batch: int, which: str):
    """A decode-paths row (``which``: "ours" = the default compiled step, "ours_graph" = --no-compile) as a
    latency report of its TPOT alone."""
    data = _load(key)
    row = next(r for r in data["rows"] if r["model"] == model and r["batch"] == batch)
    tpot, bw = row[f"{which}_tpot_ms"], row["peak_bw"]
    step = row["tpot_floor_ms"] / 1e3 * bw
    none = {"n": 0, "mean": None, "median": None, "std": None, "p90": None, "p99": None, "ci95_low": None,
            "ci95_high": None}
    rep = {"kind": "latency", "label": f"{model} b{batch} {row[f'{which}_engine']}", "model": model,
           "device": "cuda:0", "device_name": data["environment"]["card"], "engine": row[f"{which}_engine"],
           "batch": batch, "prompt_len": row["prompt_len"], "gen_len": row["gen_len"], "phases": ["tpot"],
           "ttft_ms": none, "ttlt_ms": none,
           "tpot_ms": {**none, "n": None, "mean": tpot, "median": tpot},
           "roofline": {"peak_source": row["peak_source"], "peak_bw_bytes_per_s": bw, "peak_flops_per_s": None,
                        "decode_step_bytes": step, "weights_read_bytes": None, "kv_read_bytes": None,
                        "achieved_bw_bytes_per_s": step / (tpot / 1e3),
                        "mbu": step / (tpot / 1e3) / bw}}
    return report_from_dict(rep), FILES[key]


# (what, phase, H100 side, H200 side)
PAIRS = [
    ("llama-3.1-8b b1, compiled step", "tpot", ("paths_h100", "llama-3.1-8b", 1, "ours"),
     ("paths_h200", "llama-3.1-8b", 1, "ours")),
    ("llama-3.1-8b b1, CUDA graph (no compile)", "tpot", ("paths_h100", "llama-3.1-8b", 1, "ours_graph"),
     ("paths_h200", "llama-3.1-8b", 1, "ours_graph")),
    ("llama-3.1-8b b16, compiled step", "tpot", ("paths_h100", "llama-3.1-8b", 16, "ours"),
     ("paths_h200_b16", "llama-3.1-8b", 16, "ours")),
    ("llama-3.1-8b b16, CUDA graph (no compile)", "tpot", ("paths_h100", "llama-3.1-8b", 16, "ours_graph"),
     ("paths_h200_b16", "llama-3.1-8b", 16, "ours_graph")),
    ("llama-3.2-1b b1, compiled step", "tpot", ("energy_h100",), ("paths_h200", "llama-3.2-1b", 1, "ours")),
    ("llama-3.2-1b b1 P512, prefill", "ttft", ("energy_h100",), ("energy_h200",)),
]


def _report(spec):
    return full_report(spec[0]) if len(spec) == 1 else path_report(*spec)


def _check(what: str, phase: str, src, src_file: str, dst, dst_file: str) -> dict:
    key = f"{phase}_ms"
    target = CARD[dst.device_name]
    row = project(src, [target]).card(target)
    measured_src = getattr(src, key)["median"]
    measured_dst = getattr(dst, key)["median"]
    projected = row[key]
    roof = src.roofline
    eff_src = roof.get("mbu") if phase == "tpot" else roof.get("mfu")
    eff_dst = dst.roofline.get("mbu") if phase == "tpot" else dst.roofline.get("mfu")
    return {"what": what, "phase": phase.upper(), "from": CARD[src.device_name], "to": target,
            "engine": src.engine, "from_file": src_file, "to_file": dst_file,
            "measured_from_ms": measured_src, "projected_ms": projected, "projected_range_ms": row[f"{key}_range"],
            "measured_to_ms": measured_dst, "error": projected / measured_dst - 1,
            "efficiency_from": eff_src, "efficiency_to": eff_dst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()
    rows = []
    for what, phase, h100, h200 in PAIRS:
        (a, fa), (b, fb) = _report(h100), _report(h200)
        assert a.engine == b.engine or phase == "ttft", (what, a.engine, b.engine)
        rows.append(_check(what, phase, a, fa, b, fb))
        rows.append(_check(what, phase, b, fb, a, fa))
    decode = [abs(r["error"]) for r in rows if r["phase"] == "TPOT"]
    summary = {"tpot_mean_abs_error": sum(decode) / len(decode), "tpot_max_abs_error": max(decode),
               "h100_to_h200_tpot_errors": [r["error"] for r in rows if r["phase"] == "TPOT" and r["to"] == "H200"],
               "h200_to_h100_tpot_errors": [r["error"] for r in rows if r["phase"] == "TPOT" and r["to"] == "H100"],
               "ttft_errors": [r["error"] for r in rows if r["phase"] == "TTFT"]}
    lines = [
        "# Projection checked between two cards: H100 SXM <-> H200",
        "",
        "`benchmarks/projection_check.py` projects each H100 result in benchmarks/results/ to the H200 and each",
        "H200 result to the H100 with `elana_magic.project` (decode: TPOT x peak bandwidth here / there, i.e. the",
        "measured MBU carried over; prefill: TTFT x peak FLOP/s here / there, the measured MFU carried over) and",
        "sets it against the figure measured on the other card. Datasheet peaks: H100 SXM 3.35 TB/s, 989 TFLOP/s;",
        "H200 4.8 TB/s, 989 TFLOP/s. Same shapes, engine, torch 2.11.0+cu130, transformers 5.17.0, driver",
        "580.159.04 on both cards; random bf16 weights, prompt 512, generation 128. Error = projected / measured - 1.",
        "",
        "| shape and engine | phase | from -> to | measured there (ms) | projected (ms) | measured on target (ms) "
        "| error | efficiency from -> on target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eff = "MBU" if r["phase"] == "TPOT" else "MFU"
        lines.append(f"| {r['what']} | {r['phase']} | {r['from']} -> {r['to']} | {r['measured_from_ms']:.3f} | "
                     f"{r['projected_ms']:.3f} | {r['measured_to_ms']:.3f} | {r['error']:+.1%} | "
                     f"{eff} {r['efficiency_from']:.1%} -> {r['efficiency_to']:.1%} |")
    lines += [
        "",
        f"Decode (TPOT): mean absolute error {summary['tpot_mean_abs_error']:.1%}, largest "
        f"{summary['tpot_max_abs_error']:.1%}.",
        f"Every H100 -> H200 projection is too fast ({min(summary['h100_to_h200_tpot_errors']):+.1%} to "
        f"{max(summary['h100_to_h200_tpot_errors']):+.1%}) and every H200 -> H100 one too slow",
        f"({min(summary['h200_to_h100_tpot_errors']):+.1%} to {max(summary['h200_to_h100_tpot_errors']):+.1%}): the "
        "H200 has 1.43x the H100's bandwidth, but the same decode steps ran",
        "only 1.1-1.28x faster on it, so its MBU was lower (8B batch 1 compiled: 62.1% on the H100, 54.5% on the",
        "H200). projected / measured = MBU on the target / MBU where measured, exactly: the method's error is",
        "the change of efficiency between the cards. It is largest where the step is short and launch-bound (1B:",
        "MBU 42% -> 32%) and for the uncompiled graph, smallest for the 8B model's compiled step.",
        f"Prefill (TTFT, 1B, 512 tokens): {summary['ttft_errors'][0]:+.1%} / {summary['ttft_errors'][1]:+.1%} "
        "(the same datasheet FLOP/s on both cards, so the projection",
        "is the measurement; the two cards' prefills differed by that much).",
        "",
        "Pairs and limits: the 8B rows pair `latency_decode_paths` H100 run 2 with H200 run 4 (batch 1) and run 6",
        "(batch 16, which replaces run 4's row). The 1B compiled-step row pairs the H100's `latency_energy` report",
        "(compiled step) with H200 run 4's row of the same engine: the H200's `latency_energy` report decoded",
        "without compiling, so its TPOT pairs with nothing on the H100; its TTFT (one prefill path) pairs with the",
        "H100's. The files hold no per-step samples, so the projected range collapses to the median here (a",
        "report with its samples shows the p10-p90 range).",
    ]
    write_result(args.out, "projection_check", {"pairs": rows, "summary": summary, "files": FILES}, "\n".join(lines))


if __name__ == "__main__":
    main()
