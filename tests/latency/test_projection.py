"""Projection of a latency report to other GPUs: the arithmetic by hand, the refusals, the magic, the command,
a saved report."""

import json
import math
import subprocess
import sys

import pytest
from IPython.core.error import UsageError

from elana_magic.latency import LatencyReport
from elana_magic.latency.projection import (ProjectionError, ProjectionReport, find_card, known_cards, project,
                                            projection_section)

GB = 1e9
H100_BW, H100_FL = 3.35e12, 989e12
L4_BW, L4_FL = 300e9, 121e12


def _stats(median, p90=None, n=10):
    return {"n": n, "mean": median, "median": median, "std": 0.0, "p90": p90 or median, "p99": p90 or median,
            "ci95_low": median, "ci95_high": median}


def report_dict(**over):
    """A measured report as its dict: 10 GB read per decode step at 5 ms on an H100 SXM, 100 TFLOP prefill at 200 ms."""
    step, flops = 10 * GB, 100e12
    tpot = [4.0, 4.5, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.5, 6.0, 6.0]  # median 5.0, p10 4.5, p90 6.0
    ttft = [190.0, 200.0, 200.0, 210.0]  # under 10 samples: min-max
    d = {"kind": "latency", "label": "mine", "model": "LlamaForCausalLM", "device": "cuda:0",
         "device_name": "NVIDIA H100 80GB HBM3", "engine": "cuda-graph+compile", "batch": 4, "prompt_len": 512,
         "gen_len": 101, "phases": ["ttft", "tpot", "ttlt"], "ttft_ms": _stats(200.0, n=len(ttft)),
         "tpot_ms": _stats(5.0, n=len(tpot)), "ttlt_ms": _stats(700.0, n=3),
         "tpot_samples_ms": tpot, "ttft_samples_ms": ttft, "ttlt_samples_ms": [700.0, 700.0, 700.0],
         "roofline": {"peak_source": "H100 SXM (datasheet)", "peak_bw_bytes_per_s": H100_BW,
                      "peak_flops_per_s": H100_FL, "weights_read_bytes": 9 * GB, "kv_read_bytes": 1 * GB,
                      "decode_step_bytes": step, "decode_context_tokens": 613, "prefill_flops": flops,
                      "achieved_bw_bytes_per_s": step / 5e-3, "mbu": step / 5e-3 / H100_BW,
                      "achieved_prefill_flops_per_s": flops / 0.2, "mfu": flops / 0.2 / H100_FL},
         "energy": {}, "notes": []}
    d.update(over)
    return d


def test_card_names_match_like_device_names():
    assert find_card("H100").name == "H100 SXM"
    assert find_card("h100 pcie").name == "H100 PCIe"
    assert find_card("L4").name == "L4" and find_card("L40S").name == "L40S"
    assert find_card('"Jetson AGX Orin"').name == "Jetson AGX Orin 64GB"
    assert find_card("jetson orin nano").name == "Jetson Orin Nano"
    assert find_card("A100 80GB").name == "A100 SXM 80GB" and find_card("A100").name == "A100 40GB"
    assert {find_card(n).name for n in known_cards()} == set(known_cards())  # every table name finds itself


def test_arithmetic_by_hand():
    rep = project(report_dict(), ["L4"])
    src = rep.source
    mbu = 10 * GB / 5e-3 / H100_BW
    mfu = 100e12 / 0.2 / H100_FL
    assert src["mbu"] == pytest.approx(mbu) and src["mfu"] == pytest.approx(mfu)
    row = rep.card("L4")
    # TPOT' = bytes / (MBU x peak_bw') = 5 ms x 3.35e12 / 300e9 = 55.833 ms
    assert row["tpot_ms"] == pytest.approx(10 * GB / (mbu * L4_BW) * 1e3) == pytest.approx(5.0 * 3.35e12 / 300e9)
    # range: p10 4.5 and p90 6.0 of 11 samples, scaled the same
    assert row["tpot_ms_range"] == pytest.approx([4.5 * 3.35e12 / 300e9, 6.0 * 3.35e12 / 300e9])
    assert src["tpot_range_from"] == "p10 and p90 of 11 samples"
    # TTFT' = FLOPs / (MFU x peak_flops') = 200 ms x 989 / 121; range from min 190 and max 210 of 4 samples
    assert row["ttft_ms"] == pytest.approx(200.0 * 989 / 121)
    assert row["ttft_ms_range"] == pytest.approx([190.0 * 989 / 121, 210.0 * 989 / 121])
    assert src["ttft_range_from"] == "the fastest and slowest of 4 samples"
    # tokens/s = batch / TPOT; TTLT = TTFT + (G-1) x TPOT
    assert row["tokens_per_s"] == pytest.approx(4 / (row["tpot_ms"] / 1e3))
    assert row["tokens_per_s_range"] == pytest.approx([4 / (row["tpot_ms_range"][1] / 1e3),
                                                       4 / (row["tpot_ms_range"][0] / 1e3)])
    assert row["ttlt_ms"] == pytest.approx(row["ttft_ms"] + 100 * row["tpot_ms"])
    # memory: weights + cache at 613 tokens = 10 GB against 24 GB
    assert row["needed_bytes"] == pytest.approx(10 * GB) and row["memory_bytes"] == 24 * GB and row["fits"]
    text = rep.to_text()
    assert "L4 (projected)" in text and "H100 SXM (measured)" in text and "55.8 ms" in text
    assert "projected, not measured" in text and "the same efficiency as measured here" in text
    assert "no kernel or software change" in text and "weights and cache bytes as stored" in text
    assert "p10 and p90 of 11 samples" in text


def test_same_card_gives_back_the_measurement_and_summary_only_range():
    d = report_dict(tpot_samples_ms=[], ttft_samples_ms=[])
    d["tpot_ms"] = _stats(5.0, p90=5.5)
    row = project(d, ["H100"]).card("H100")
    assert row["tpot_ms"] == pytest.approx(5.0) and row["tpot_ms_range"] == pytest.approx([5.0, 5.5])
    assert any("gives back the measurement" in n for n in row["notes"])


def test_unknown_card_is_one_line_listing_the_known_ones():
    with pytest.raises(ProjectionError) as exc:
        project(report_dict(), ["H100", "TPU v5"])
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("unknown GPU 'TPU v5' for the projection; known: H200, H100 PCIe")
    assert "Jetson AGX Orin 64GB" in msg


def test_no_mbu_refused_unless_peaks_given():
    d = report_dict(device="cpu", device_name="x86_64")
    d["roofline"] = {k: v for k, v in d["roofline"].items() if k not in ("peak_bw_bytes_per_s", "peak_flops_per_s",
                                                                          "mbu", "mfu", "peak_source")}
    with pytest.raises(ProjectionError, match=r"^the report has no MBU/MFU \(no peak known for x86_64\): measure "
                                              r"with --peak-bw/--peak-flops"):
        project(d, ["H100"])
    # the device's own peaks given: the efficiency follows from the achieved figures the report holds
    rep = project(d, ["L4"], peak_bw=100e9)
    assert rep.source["mbu"] == pytest.approx(10 * GB / 5e-3 / 100e9)
    assert rep.card("L4")["tpot_ms"] == pytest.approx(5.0 * 100e9 / L4_BW)
    assert rep.card("L4")["ttft_ms"] is None and any("prefill not projected" in n for n in rep.notes)


def test_memory_fit_refusal():
    d = report_dict()
    d["roofline"] = dict(d["roofline"], weights_read_bytes=15 * GB, kv_read_bytes=1 * GB)
    rep = project(d, ["Jetson Orin Nano", "Jetson AGX Orin"])
    nano = rep.card("Jetson Orin Nano")
    assert nano["fits"] is False and nano["status"] == "does not fit: needs 16 GB of 8 GB"
    assert nano["tpot_ms"] is None and nano["ttft_ms"] is None
    agx = rep.card("Jetson AGX Orin")
    assert agx["fits"] and agx["tpot_ms"] and any("shared with the CPU and the OS" in n for n in agx["notes"])
    assert "Jetson Orin Nano: does not fit: needs 16 GB of 8 GB" in rep.to_text()


def test_memory_from_the_measured_peak_and_a_dynamic_cache_scaled():
    d = report_dict(engine="eager")
    d["roofline"] = dict(d["roofline"], decode_context_tokens=562)  # prompt + gen // 2 for a dynamic cache
    need = projection_section(d, ["L4"])["source"]["needed_bytes"]
    assert need == pytest.approx(9 * GB + 1 * GB * 613 / 562)
    d["memory"] = {"phases": [{"phase": "prefill", "analytic_bytes": 11 * GB, "measured_peak_bytes": 30 * GB,
                               "measured_kind": "allocated"}], "method": "x"}
    src = projection_section(d, ["L4"])["source"]
    assert src["needed_bytes"] == 30 * GB and "measured allocator peak" in src["needed_from"]
    assert project(d, ["L4"]).card("L4")["status"] == "does not fit: needs 30 GB of 24 GB"


def test_other_reports_refused():
    with pytest.raises(ProjectionError, match="one configuration, got a grid"):
        project({"kind": "latency-grid", "cells": []}, ["H100"])
    with pytest.raises(ProjectionError, match="one-GPU latency report; this one ran 2 replicas"):
        project(report_dict(ngpus=2), ["H100"])


def test_views_and_dataframe():
    rep = project(report_dict(), ["H200", "L4"])
    html = rep.to_html()
    assert "elana-projection" in html and "L4 (projected)" in html and "<img" in html
    df = rep.to_dataframe()
    assert list(df["card"]) == ["H200", "L4"] and df["projected"].all()
    assert df.loc[1, "projected_tpot_ms"] == pytest.approx(5.0 * 3.35e12 / 300e9)
    ipywidgets = pytest.importorskip("ipywidgets")
    assert isinstance(rep.widget(), ipywidgets.VBox)


def test_saved_report_round_trip(tmp_path):
    from elana_magic import load_report, project as top_project

    measured = LatencyReport.from_dict(report_dict())
    path = measured.save(str(tmp_path / "run.json"))
    rep = top_project(path, ["L4", "Jetson AGX Orin"])
    assert isinstance(rep, ProjectionReport) and rep.label == "mine"
    assert rep.card("L4")["tpot_ms"] == pytest.approx(5.0 * 3.35e12 / 300e9)
    saved = rep.save(str(tmp_path / "projection.json"))
    back = load_report(saved)
    assert isinstance(back, ProjectionReport) and back.to_text() == rep.to_text()
    assert json.loads(back.to_json())["kind"] == "projection"


def test_section_in_a_latency_report_text_html_and_round_trip(tmp_path):
    from elana_magic import load_report
    from elana_magic.latency.projection import attach_projection

    rep = attach_projection(LatencyReport.from_dict(report_dict()), ["L4"])
    assert "L4 (projected)" in rep.to_text() and "L4 (projected)" in rep.to_html()
    back = load_report(rep.save(str(tmp_path / "r.json")))
    assert back.projection["targets"][0]["card"] == "L4" and "L4 (projected)" in back.to_text()


# -- the magic and the command ----------------------------------------------------------------------
FAST = "--warmup 0 --repeats 2 --min-time 0 --no-energy --prompt-len 8 --gen-len 3"


@pytest.fixture
def shell(ip, tiny_llama):
    ip.user_ns["model"] = tiny_llama
    return ip


def test_magic_project_with_quoted_names(shell):
    rep = shell.run_line_magic("elana_latency", f'model {FAST} --peak-bw 10GB/s --peak-flops 1T '
                                                f'--project H100 "Jetson AGX Orin" L4 -o -q')
    section = rep.projection
    assert [r["card"] for r in section["targets"]] == ["H100 SXM", "Jetson AGX Orin 64GB", "L4"]
    l4 = section["targets"][2]
    assert l4["tpot_ms"] == pytest.approx(rep.tpot_ms["median"] * 10e9 / 300e9)
    assert l4["ttft_ms"] == pytest.approx(rep.ttft_ms["median"] * 1e12 / 121e12)
    assert "Jetson AGX Orin 64GB (projected)" in rep.to_text() and "L4 (projected)" in rep.to_html()


@pytest.mark.parametrize("line, match", [
    ("model --project TPUv5 --peak-bw 1GB/s", r"^unknown GPU 'TPUv5' for the projection; known: H200, "),
    ("model --project H100", r"^--project needs the measured fraction of peak \(MBU/MFU\), and no peak is known "),
    ("model --project H100 --batch 1 2 --peak-bw 1GB/s", r"^--project takes one configuration"),
])
def test_magic_project_refusals(shell, line, match):
    with pytest.raises(UsageError, match=match):
        shell.run_line_magic("elana_latency", f"{line} {FAST} -q")


def test_magic_help_lists_project(shell):
    from elana_magic.magics.latency import LatencyMagics

    assert "--project GPU [GPU ...]" in LatencyMagics.elana_latency.__doc__


def _run(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "elana_magic", *argv], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_command_project(tmp_path):
    out = _run("random:tiny-llama", "--ttft", "--tpot", "--prompt-len", "8", "--gen-len", "3", "--repeats", "2",
               "--warmup", "0", "--min-time", "0", "--no-energy", "--peak-bw", "10GB/s", "--peak-flops", "1T",
               "--project", "L4", "Jetson AGX Orin", "--json", str(tmp_path / "run.json"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "L4 (projected)" in out.stdout and "Jetson AGX Orin 64GB (projected)" in out.stdout
    data = json.loads((tmp_path / "run.json").read_text())["latency"]
    assert [r["card"] for r in data["projection"]["targets"]] == ["L4", "Jetson AGX Orin 64GB"]
    bad = _run("random:tiny-llama", "--tpot", "--project", "Nope", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("elana-magic: unknown GPU 'Nope' for the projection")
    assert len(bad.stderr.strip().splitlines()) == 1
    help_text = " ".join(_run("--help").stdout.split())
    assert "--project GPU [GPU ...]" in help_text and "Jetson AGX Orin" in help_text
    assert not math.isnan(data["projection"]["targets"][0]["tpot_ms"])
