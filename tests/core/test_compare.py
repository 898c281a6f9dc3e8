"""Comparison: the verdict's calibration, ratios and warnings, the envelope and saved reports, history."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from elana_magic.core.compare import Comparison, CompareError, compare
from elana_magic.core.envelope import ENVELOPE_KEYS, ReportFileError, load_report
from elana_magic.core.history import History
from elana_magic.core.stats import paired_ratio_ci, ratio_of_medians_ci, ratio_verdict, round_ratios
from elana_magic.latency import LatencyReport, measure_latency
from elana_magic.size import measure_size

FAST = dict(warmup=0, repeats=2, min_time=0.0, progress=False, energy=False)


def _verdict(a, b) -> str:
    return ratio_verdict("TPOT", *ratio_of_medians_ci(a, b))


# -- the verdict is calibrated -------------------------------------------------------------------
def test_same_distribution_is_no_difference_in_at_least_90_percent_of_trials():
    rng = np.random.default_rng(2026)
    calls = [_verdict(rng.lognormal(np.log(20.0), 0.05, 100), rng.lognormal(np.log(20.0), 0.05, 100))
             for _ in range(200)]
    quiet = sum("no difference beyond noise" in v for v in calls)
    assert quiet >= 180, f"{quiet}/200"


def test_a_true_5_percent_shift_is_detected_in_at_least_90_percent_of_trials():
    rng = np.random.default_rng(7)
    calls = [_verdict(rng.lognormal(np.log(20.0), 0.05, 100), rng.lognormal(np.log(20.0 * 0.95), 0.05, 100))
             for _ in range(200)]
    sizes = [re.match(r"TPOT ([\d.]+)% lower", v) for v in calls]
    found = sum(m is not None and 3.5 <= float(m.group(1)) <= 6.5 for m in sizes)
    assert found >= 180, f"{found}/200"


def test_interval_is_seeded_and_words_read_right():
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(0, 0.05, 100), rng.lognormal(np.log(0.88), 0.05, 100)
    assert ratio_of_medians_ci(a, b) == ratio_of_medians_ci(a, b)
    ratio, low, high = ratio_of_medians_ci(a, b)
    assert low < ratio < high < 1
    assert ratio_verdict("TPOT", 0.88, 0.86, 0.90) == "TPOT 12% lower (95% CI 10-14%)"
    assert ratio_verdict("TTFT", 1.2, 1.1, 1.3) == "TTFT 20% higher (95% CI 10-30%)"
    assert ratio_verdict("TPOT", 1.01, 0.97, 1.05).startswith("TPOT: no difference beyond noise")
    assert ratio_of_medians_ci([1, 2, 3], [1, 2, 3, 4, 5, 6]) is None  # too few samples for an interval
    assert ratio_verdict("TPOT", 1.031, 1.02, 1.04) == "TPOT 3.1% higher (95% CI 2.0-4.0%)"


def test_a_change_inside_the_noise_threshold_is_noise():
    """A model against its own copy on an H200: 0.2% apart, interval +-0.01% (thousands of pooled steps)."""
    quiet = ratio_verdict("TPOT", 0.9979, 0.9978, 0.9980)
    assert quiet.startswith("TPOT: no difference beyond noise") and "1% noise threshold" in quiet
    assert ratio_verdict("TPOT", 0.990, 0.985, 0.995).startswith("TPOT: no difference beyond noise")
    assert ratio_verdict("TPOT", 0.984, 0.980, 0.988) == "TPOT 1.6% lower (95% CI 1.2-2.0%)"
    assert ratio_verdict("TPOT", 0.9979, 0.9978, 0.9980, noise=0.001).startswith("TPOT 0.2% lower")
    rng = np.random.default_rng(3)
    a = _latency({}, list(rng.normal(10, 0.001, 2000)), "base")
    b = _latency({}, list(rng.normal(9.98, 0.001, 2000)), "copy")
    tpot = compare([a, b]).ratio("TPOT")
    assert tpot.ci_high < 1 and not tpot.significant and "noise" in tpot.verdict
    strict = compare([a, b], noise_threshold=0.001).ratio("TPOT")
    assert strict.significant and strict.verdict.startswith("TPOT 0.2% lower")
    import elana_magic

    assert elana_magic.compare(a, b, noise_threshold=0.001).ratio("TPOT").verdict == strict.verdict


def _rounds_ratio(a: list, b: list):
    per_round = round_ratios(np.concatenate(a), np.concatenate(b), [x.size for x in a], [x.size for x in b])
    return per_round, paired_ratio_ci(per_round)


def test_rounds_that_differ_widen_the_interval_to_the_truth():
    """The same model twice on an H200: eager-prefill TTFT rounds drift between ~21 and ~37 ms (host-bound
    launches). Pooled samples gave a 35% difference; the rounds as replicates find none."""
    rng = np.random.default_rng(5)
    a = [rng.normal(m, 0.5, 100) for m in (21, 37, 37, 21)]
    b = [rng.normal(m, 0.5, 100) for m in (21, 21, 37, 21)]
    assert ratio_of_medians_ci(np.concatenate(a), np.concatenate(b))[2] < 0.99  # pooled: excludes 1
    per_round, (low, high) = _rounds_ratio(a, b)
    assert len(per_round) == 4 and low <= 1 <= high


def test_rounds_that_agree_still_find_a_real_change():
    rng = np.random.default_rng(6)
    a = [rng.normal(10 + d, 0.2, 200) for d in (0, 0.1, -0.1, 0.05)]
    b = [rng.normal(7.5 + d, 0.2, 200) for d in (0.05, -0.1, 0.1, 0)]
    _, (low, high) = _rounds_ratio(a, b)
    assert 0.72 < low < high < 0.78
    assert ratio_verdict("TPOT", 0.75, low, high).startswith("TPOT 25% lower")
    # round sizes that don't add up to the samples, or unequal round counts: not paired
    assert round_ratios(np.concatenate(a), np.concatenate(b), [5, 5], [800]) is None
    assert round_ratios(np.concatenate(a), np.concatenate(b), [400, 400], [200] * 4) is None


def test_paired_comparison_uses_the_rounds_and_says_when_they_move():
    rng = np.random.default_rng(8)
    a = [rng.normal(m, 0.5, 50) for m in (21, 37, 21, 37)]
    b = [rng.normal(m, 0.5, 50) for m in (37, 21, 21, 21)]
    base = _latency({"extra": {"round_sizes": {"tpot": [50] * 4}}}, list(np.concatenate(a)), "base")
    copy_ = _latency({"extra": {"round_sizes": {"tpot": [50] * 4}}}, list(np.concatenate(b)), "copy")
    comp = compare([base, copy_])
    tpot = comp.ratio("TPOT")
    assert tpot.round_ratios is not None and len(tpot.round_ratios) == 4
    assert tpot.ci_low <= 1 <= tpot.ci_high and "no difference beyond noise" in tpot.verdict
    assert any("TPOT moved between rounds" in n for n in comp.notes)
    assert tpot.round_ratios == comp.to_dict()["ratios"][0]["round_ratios"]


def test_paired_reports_keep_their_round_sizes(tiny_llama):
    from elana_magic.latency import measure_paired

    other = copy.deepcopy(tiny_llama)
    comp = measure_paired([tiny_llama, other], labels=["a", "b"], rounds=3, phases=["ttft", "tpot"],
                          prompt_len=8, gen_len=5, warmup=0, repeats=3, min_time=0, progress=False, energy=False)
    for rep in comp.reports:
        sizes = rep.to_dict()["round_sizes"]
        assert len(sizes["ttft"]) == len(sizes["tpot"]) == 3
        assert sum(sizes["ttft"]) == len(rep.ttft_samples_ms) and sum(sizes["tpot"]) == len(rep.tpot_samples_ms)
    back = LatencyReport.from_dict(comp.reports[1].to_dict())  # a saved report compares like a live one
    assert back.to_dict()["round_sizes"] == sizes
    assert compare([LatencyReport.from_dict(comp.reports[0].to_dict()), back]).ratio("TPOT").ci_low is not None


# -- comparisons of real reports -----------------------------------------------------------------
def _latency(data: dict, samples: list[float], label: str) -> LatencyReport:
    fields = dict(label=label, model="M", device="cpu", device_name="cpu", engine="eager", batch=1,
                  prompt_len=8, gen_len=9, phases=["tpot"], ttft_ms={"n": 0}, ttlt_ms={"n": 0},
                  tpot_ms={"n": len(samples), "median": float(np.median(samples))}, tpot_samples_ms=samples,
                  energy={"tokens_per_s": 1e3 / float(np.median(samples))})
    return LatencyReport(**{**fields, **data})


def test_latency_ratios_intervals_and_derived_figures():
    rng = np.random.default_rng(1)
    a = _latency({}, list(rng.lognormal(np.log(10), 0.03, 200)), "base")
    b = _latency({}, list(rng.lognormal(np.log(8), 0.03, 200)), "fast")
    comp = compare([a, b])
    tpot = comp.ratio("TPOT")
    assert tpot.ratio == pytest.approx(0.8, rel=0.02) and tpot.ci_high < 1 and tpot.significant
    assert tpot.verdict.startswith("TPOT 20% lower (95% CI")
    tps = comp.ratio("tokens/s")  # 1/TPOT: the inverted interval
    assert tps.ratio == pytest.approx(1 / tpot.ratio) and tps.ci_low == pytest.approx(1 / tpot.ci_high)
    assert any("TPOT 20% lower" in v for v in comp.verdicts())
    df = comp.to_dataframe()
    assert {"figure", "ratio", "ci_low", "ci_high", "verdict"} <= set(df.columns)
    # the table's cell sits beside its figure: the verdict without the figure's name
    assert tpot.table_verdict.startswith("20% lower (95% CI") and "20% lower (95% CI" in comp.to_text()
    assert "<table" in comp.to_html()
    from matplotlib.figure import Figure

    assert isinstance(comp.figure(), Figure)


def test_not_comparable_settings_warn():
    rng = np.random.default_rng(3)
    a = _latency({}, list(rng.lognormal(0, 0.03, 50)), "a")
    b = _latency({"engine": "cuda-graph", "device_name": "NVIDIA H200"}, list(rng.lognormal(0, 0.03, 50)), "b")
    a.envelope.environment = {"device_name": "cpu", "torch": "2.1", "gpu": {"start": {"power_limit_w": 700, "sm_clock_mhz": 1980}}}
    b.envelope.environment = {"device_name": "NVIDIA H200", "torch": "2.2", "gpu": {"start": {"power_limit_w": 500, "sm_clock_mhz": 1900}}}
    text = "\n".join(compare([a, b]).warnings)
    for expected in ("ran on NVIDIA H200", "engine cuda-graph", "torch 2.2", "power limit 500"):
        assert expected in text
    assert "SM clock" not in text  # 4% apart: within the 5% tolerance


def test_compare_refuses_fewer_than_two_and_non_reports():
    with pytest.raises(CompareError, match="at least two"):
        compare([_latency({}, [1.0] * 6, "a")])
    with pytest.raises(CompareError, match="can't compare a dict"):
        compare([_latency({}, [1.0] * 6, "a"), {}])


def test_size_reports_compare_by_grid_row(tiny_llama):
    import copy

    pruned = copy.deepcopy(tiny_llama)
    pruned.model.layers = pruned.model.layers[:1]
    pruned.config.num_hidden_layers = 1
    a = measure_size(tiny_llama, batch=[1, 4], seq_len=[64], cross_check=False)
    b = measure_size(pruned, batch=[1, 4], seq_len=[64], cross_check=False)
    comp = compare([a, b])
    assert comp.ratio("cache B=4 L=64").ratio == pytest.approx(0.5)
    assert comp.ratio("model bytes").ratio < 1
    assert a.fingerprint["hash"] != b.fingerprint["hash"]


# -- the envelope and saved reports ----------------------------------------------------------------
def test_every_kind_carries_the_envelope_and_reads_back(tmp_path, tiny_llama, constant_power):
    from elana_magic.energy import EnergyMeter, measure_energy
    from elana_magic.profile import profile_phase

    with EnergyMeter(sensors=[constant_power()], measure_idle=False) as meter:
        energy = measure_energy(lambda: sum(range(1000)), meter=meter, min_time=0.3, label="loop")
    reports = [measure_size(tiny_llama, seq_len=[16], cross_check=False, label="s"),
               measure_latency(tiny_llama, prompt_len=8, gen_len=5, label="l", **FAST),
               energy,
               profile_phase(tiny_llama, phase="tpot", prompt_len=8, gen_len=5, steps=2, out=str(tmp_path), label="p")]
    for rep in reports:
        d = rep.to_dict()
        assert tuple(d)[:len(ENVELOPE_KEYS)] == ENVELOPE_KEYS
        assert d["kind"] in ("size", "latency", "energy", "profile") and d["created"].endswith("+00:00")
        assert d["environment"]["elana_magic"] and d["environment"]["torch"] and d["environment"]["host"]
        if d["kind"] != "energy":
            fp = d["fingerprint"]
            assert fp["class"] == "LlamaForCausalLM" and fp["param_count"] == 139584 and len(fp["hash"]) == 12
            assert fp["bytes_by_dtype"] == {"float32": fp["storage_bytes"]} and fp["attn_implementation"]
        back = load_report(rep.save(str(tmp_path / f"{d['kind']}.json")))
        assert type(back) is type(rep)
        assert json.loads(back.to_json()) == json.loads(rep.to_json())
        assert back.to_text() and callable(back.figure)
    assert reports[1].to_dict()["settings"]["prompt_len"] == 8 and reports[0].to_dict()["settings"]["seq_len"] == [16]


def test_fingerprint_changes_with_an_in_place_edit(tiny_llama):
    import copy

    import torch

    from elana_magic.core.fingerprint import model_fingerprint

    before = model_fingerprint(tiny_llama)
    edited = copy.deepcopy(tiny_llama).to(torch.bfloat16)
    after = model_fingerprint(edited)
    assert after["hash"] != before["hash"] and after["bytes_by_dtype"] == {"bfloat16": before["storage_bytes"] // 2}
    assert model_fingerprint(copy.deepcopy(tiny_llama))["hash"] == before["hash"]


def test_bad_files_are_one_line(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ReportFileError, match="is not JSON"):
        load_report(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{}")
    with pytest.raises(ReportFileError, match="no 'kind'"):
        load_report(tmp_path / "y.json")
    with pytest.raises(ReportFileError, match="cannot read"):
        load_report(tmp_path / "missing.json")


# -- history ---------------------------------------------------------------------------------------
def test_history_is_bounded_and_says_what_it_dropped(tiny_llama):
    h = History(limit=3)
    rep = measure_size(tiny_llama, seq_len=[16], cross_check=False)
    indices = [h.add(rep) for _ in range(5)]
    assert indices == [0, 1, 2, 3, 4] and len(h) == 3 and [e.index for e in h.entries] == [2, 3, 4]
    assert len(h.notes) == 2 and "dropped #0" in h.notes[0]
    assert h[4] is rep and h["#3"] is rep and h[-1] is rep
    with pytest.raises(KeyError, match="no report #0"):
        h.get(0)
    df = h.to_dataframe()
    assert list(df["index"]) == [2, 3, 4] and "fingerprint" in df.columns


def test_history_saved_in_one_kernel_compares_in_a_fresh_one(ip, tmp_path, tiny_llama):
    """Done-when 3: save the history here, load it in a fresh interpreter, compare with a new report."""
    ip.user_ns["m"] = tiny_llama
    ip.run_line_magic("elana_latency", "m --tpot --prompt-len 8 --gen-len 9 --no-energy --warmup 1 "
                                       "--repeats 3 --min-time 0 --label before -q")
    saved = tmp_path / "runs.jsonl"
    ip.run_line_magic("elana_history", f"--save {saved} -q")
    assert len(saved.read_text().splitlines()) == 1
    script = textwrap.dedent(f"""
        import json
        from IPython.core.interactiveshell import InteractiveShell
        from elana_magic.models import random_model
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "elana_magic")
        ip.run_line_magic("elana_history", "--load {saved} -q")
        ip.user_ns["m"] = random_model("tiny-llama")
        ip.run_line_magic("elana_latency", "m --tpot --prompt-len 8 --gen-len 9 --no-energy --warmup 1 "
                                           "--repeats 3 --min-time 0 --label after -q")
        c = ip.run_line_magic("elana_compare", "before after -o -q")
        h = ip.run_line_magic("elana_history", "-o -q")
        print(json.dumps({{"labels": c.labels, "tpot": c.ratio("TPOT").ci_low is not None,
                          "history": [e.label for e in h.entries]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"labels": ["before", "after"], "tpot": True, "history": ["before", "after"]}


def test_history_and_compare_magics(ip, tmp_path, tiny_llama):
    from IPython.core.error import UsageError

    ip.user_ns["m"] = tiny_llama
    ip.run_line_magic("elana_size", "m --seq-len 16 -q")
    ip.run_line_magic("elana_latency", "m --tpot --prompt-len 8 --gen-len 9 --no-energy --warmup 0 --repeats 2 "
                                       "--min-time 0 --label a -v rep_a -q")
    ip.run_line_magic("elana_latency", "m --tpot --prompt-len 8 --gen-len 9 --no-energy --warmup 0 --repeats 2 "
                                       "--min-time 0 --label b -q")
    h = ip.run_line_magic("elana_history", "-o -q")
    assert [e.report.kind for e in h.entries] == ["size", "latency", "latency"]
    path = tmp_path / "b.json"
    h["b"].save(str(path))
    c = ip.run_line_magic("elana_compare", f"rep_a {path} -o -q")  # a variable and a saved file
    assert isinstance(c, Comparison) and c.labels == ["a", "b"]
    assert ip.run_line_magic("elana_compare", "1 -1 -o -q").labels == ["a", "b"]  # history indices
    with pytest.raises(UsageError, match="at least two"):
        ip.run_line_magic("elana_compare", "1")
    with pytest.raises(UsageError, match="no report labelled 'nope'"):
        ip.run_line_magic("elana_compare", "a nope")
    ip.run_line_magic("elana_history", "--clear -q")
    assert len(ip.run_line_magic("elana_history", "-o -q")) == 0


def test_profile_and_energy_reports_compare(tmp_path, tiny_llama, constant_power):
    import copy

    from elana_magic.energy import EnergyMeter, measure_energy
    from elana_magic.profile import profile_phase

    pruned = copy.deepcopy(tiny_llama)
    pruned.model.layers = pruned.model.layers[:1]
    pruned.config.num_hidden_layers = 1
    a, b = (profile_phase(m, phase="tpot", prompt_len=8, gen_len=6, steps=4, out=str(tmp_path), label=lab)
            for m, lab in ((tiny_llama, "full"), (pruned, "pruned")))
    comp = compare([a, b])
    names = {r.figure for r in comp.ratios}
    assert "CPU time: total" in names and any(n.startswith("CPU time: matmul") for n in names)
    assert comp.changed_kernels and all(c["change_us"] != 0 for c in comp.changed_kernels)
    assert "changed most" in comp.to_text()
    with EnergyMeter(sensors=[constant_power()], measure_idle=False) as meter:
        short, long = (measure_energy(lambda n=n: sum(range(n)), meter=meter, min_time=t, label=f"{t}s")
                       for n, t in ((1000, 0.3), (1000, 0.6)))
    ec = compare([short, long])
    assert {r.figure for r in ec.ratios} == {"energy", "power", "duration"}
    assert ec.ratio("power").ratio == pytest.approx(1.0, rel=0.2)  # the same 50 W board


def test_comparison_views(ip, tiny_llama):
    """One output per cell with text, static HTML (tables + the chart as PNG) like every report."""
    rng = np.random.default_rng(5)
    a = _latency({}, list(rng.lognormal(0, 0.03, 60)), "a")
    b = _latency({}, list(rng.lognormal(-0.2, 0.03, 60)), "b")
    comp = compare([a, b])
    bundle = comp._repr_mimebundle_()
    assert "TPOT" in bundle["text/plain"]
    assert "elana-compare" in bundle["text/html"] and "<img" in bundle["text/html"] and "<table" in bundle["text/html"]
    view = comp.widget()
    assert "elana-compare" in view._dom_classes and len(view.children) >= 2
    h = History()
    h.add(a)
    assert "elana-history" in h.to_html() and "TPOT" in h.to_text()


# -- issue 20: one estimator, direction-aware colours, wrapping tables, numbers in DataFrames ---------
def test_paired_point_is_the_rounds_geometric_mean_inside_its_interval():
    rng = np.random.default_rng(11)
    a = [rng.normal(m, 0.1, n) for m, n in ((10, 5), (30, 200), (10, 5))]   # pooled median: the long round
    b = [rng.normal(m, 0.1, n) for m, n in ((8, 200), (30, 5), (8, 200))]

    def sizes(rounds):
        return {"extra": {"round_sizes": {"tpot": [x.size for x in rounds]}}}

    comp = compare([_latency(sizes(a), list(np.concatenate(a)), "a"), _latency(sizes(b), list(np.concatenate(b)), "b")])
    tpot = comp.ratio("TPOT")
    assert tpot.ratio == pytest.approx(float(np.exp(np.mean(np.log(tpot.round_ratios)))))
    assert tpot.ci_low <= tpot.ratio <= tpot.ci_high
    tps = comp.ratio("tokens/s")
    assert tps.ci_low <= tps.ratio <= tps.ci_high
    comp.figure()  # raised "'xerr' must not contain negative values" before


def _colours(comp: Comparison) -> dict[str, str]:
    from matplotlib.colors import to_hex

    ax = comp.figure().axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    return {n: to_hex(line.get_color()) for n, line in zip(names, [ln for ln in ax.lines if ln.get_marker() == "o"])}


def test_chart_colours_better_green_worse_red_whatever_the_direction():
    from matplotlib.colors import to_hex

    from elana_magic.core.compare import BETTER_COLOUR, NO_CHANGE_COLOUR, WORSE_COLOUR

    BETTER_COLOUR, NO_CHANGE_COLOUR, WORSE_COLOUR = map(to_hex, (BETTER_COLOUR, NO_CHANGE_COLOUR, WORSE_COLOUR))

    rng = np.random.default_rng(1)
    slow = _latency({}, list(rng.lognormal(np.log(10), 0.03, 200)), "slow")
    fast = _latency({}, list(rng.lognormal(np.log(8), 0.03, 200)), "fast")
    better = compare([slow, fast])
    assert better.ratio("TPOT").improved is True and better.ratio("tokens/s").improved is True
    colours = _colours(better)
    assert colours["TPOT"] == colours["tokens/s"] == BETTER_COLOUR  # tokens/s up is better: green, not red
    worse = _colours(compare([fast, slow]))
    assert worse["TPOT"] == worse["tokens/s"] == WORSE_COLOUR
    same = _latency({}, list(rng.lognormal(np.log(10), 0.03, 200)), "same")
    assert _colours(compare([slow, same]))["TPOT"] == NO_CHANGE_COLOUR


def test_verdict_comes_right_after_the_figure_and_long_cells_wrap():
    rng = np.random.default_rng(5)
    comp = compare([_latency({}, list(rng.lognormal(0, 0.03, 60)), "a"),
                    _latency({}, list(rng.lognormal(-0.2, 0.03, 60)), "b")])
    header, rows = comp._rows()
    assert header[:2] == ["figure", "verdict"] and rows[0][0] == "TPOT" and re.match(r"\d+% lower", rows[0][1])
    html = comp.to_html()
    assert "max-width:100%" in html and "white-space:normal" in html
    verdict_cell = re.search(r"<td style='([^']*)'>\d+% lower", html)
    assert verdict_cell and "white-space:normal" in verdict_cell.group(1)
    h = History()
    h.add(comp.reports[0])
    assert h._table()[0][:3] == ["#", "label", "figures"] and "white-space:normal" in h.to_html()


def test_dataframes_hold_numbers_with_units_in_column_names(tiny_llama):
    h = History()
    h.add(_latency({}, [254.5] * 7, "a"))
    h.add(measure_size(tiny_llama, seq_len=[16], cross_check=False))
    df = h.to_dataframe()
    assert df.loc[0, "tpot_ms"] == 254.5 and df["tpot_ms"].dtype.kind == "f"
    assert df.loc[1, "params"] == 139584 and df.loc[1, "model_bytes"] > 0
    assert (df["tpot_ms"] / 2).iloc[0] == pytest.approx(127.25) and not any(c.startswith("figure.") for c in df)
    assert "254.5 ms" in h.to_text()  # the views keep their formatted figures
    rng = np.random.default_rng(5)
    cdf = compare([_latency({}, list(rng.lognormal(0, 0.03, 60)), "a"),
                   _latency({}, list(rng.lognormal(-0.2, 0.03, 60)), "b")]).to_dataframe()
    assert all(cdf[c].dtype.kind == "f" for c in ("baseline", "value", "ratio", "ci_low", "ci_high"))


def test_each_kind_owns_its_comparison_figures():
    """Issue 22: core's comparison reads the figures from the report kind's class; it knows no kind's keys."""
    import inspect

    from elana_magic.core import compare as compare_module
    from elana_magic.core.envelope import REPORT_KINDS

    source = inspect.getsource(compare_module)
    for key in ("ttft_ms", "tpot_ms\"", "param_count", "energy_j", "breakdown", "decode_step_bytes", "j_per_token"):
        assert key not in source, key
    import elana_magic.reports  # noqa: F401 - every kind registered

    owners = {k for k, cls in REPORT_KINDS.items() if "comparison_figures" in cls.__dict__}
    assert {"size", "latency", "energy", "profile"} <= owners
