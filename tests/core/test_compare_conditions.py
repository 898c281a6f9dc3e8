"""Issue 21: a comparison says when two runs' conditions differ and withholds its verdict then; a figure
without an interval gets no verdict; a paired run of too few rounds says how many would give one."""

from __future__ import annotations

import numpy as np

from elana_magic.core.compare import NO_CHANGE_COLOUR, compare
from elana_magic.core.stats import MIN_ROUNDS
from elana_magic.latency import LatencyReport


def _report(label, samples, load=None, threads=1, rounds=None, sizes=None) -> LatencyReport:
    rep = LatencyReport(label=label, model="M", device="cpu", device_name="cpu", engine="eager", batch=1,
                        prompt_len=8, gen_len=9, phases=["tpot"], ttft_ms={"n": 0}, ttlt_ms={"n": 0},
                        tpot_ms={"n": len(samples), "median": float(np.median(samples))},
                        tpot_samples_ms=list(samples), energy={"tokens_per_s": 1e3 / float(np.median(samples))},
                        rounds=list(rounds or []), extra={"round_sizes": {"tpot": sizes}} if sizes else {})
    rep.envelope.environment = {"device": "cpu", "device_name": "cpu",
                                "conditions": {"cores": 2, "torch_threads": threads, "other_busy_cores": load}}
    return rep


rng = np.random.default_rng(3)
FAST = list(rng.lognormal(np.log(10), 0.03, 100))
SLOW = list(rng.lognormal(np.log(45), 0.03, 100))


def test_load_that_changed_between_runs_withholds_the_verdict():
    comp = compare([_report("a", SLOW, load=1.9), _report("b", FAST, load=0.1)])
    tpot = comp.ratio("TPOT")
    assert tpot.ci_low is not None and tpot.ci_low <= tpot.ratio <= tpot.ci_high   # the interval stays
    assert not tpot.significant and tpot.improved is None and tpot.withheld
    assert tpot.verdict.startswith("TPOT 78% lower, but host load changed between the runs (1.9 -> 0.1 busy cores)")
    assert "no conclusion" in tpot.verdict and "%elana_latency a b --rounds 6" in tpot.verdict
    # in the table the hint is left to the warning under it, said once for every withheld row
    assert "no conclusion" in tpot.table_verdict and "--rounds" not in tpot.table_verdict
    assert not comp.ratio("tokens/s").significant   # derived from TPOT: withheld alike
    assert any("measured apart under other conditions" in w and "1.9 -> 0.1" in w for w in comp.warnings)
    ax = comp.figure().axes[0]
    from matplotlib.colors import to_hex
    assert {to_hex(ln.get_color()) for ln in ax.lines if ln.get_marker() == "o"} == {to_hex(NO_CHANGE_COLOUR)}
    assert "no conclusion" in comp.to_text()
    assert "a: latency" in comp.to_text() and "ran with 1 CPU thread on 2 cores, others 1.9 busy cores" in comp.to_text()


def test_same_conditions_keep_the_verdict_and_thread_counts_count_on_cpu():
    steady = compare([_report("a", SLOW, load=0.2), _report("b", FAST, load=0.4)]).ratio("TPOT")
    assert steady.significant and steady.verdict.startswith("TPOT 78% lower (95% CI")
    threads = compare([_report("a", SLOW, threads=2), _report("b", FAST, threads=1)])
    assert not threads.ratio("TPOT").significant and "torch used 2 -> 1 CPU threads" in threads.ratio("TPOT").verdict
    old = compare([_report("a", SLOW), _report("b", FAST)])   # nothing recorded: nothing to withhold
    assert old.ratio("TPOT").significant


def test_paired_rounds_share_their_conditions():
    order = ["a", "b", "b", "a", "a", "b", "b", "a"]
    sizes = [25] * 4
    comp = compare([_report("a", SLOW, load=1.9, rounds=order, sizes=sizes),
                    _report("b", FAST, load=0.1, rounds=order, sizes=sizes)])
    tpot = comp.ratio("TPOT")
    assert tpot.round_ratios and tpot.significant and tpot.verdict.startswith("TPOT 78% lower (95% CI")
    assert not any("other conditions" in w for w in comp.warnings)


def test_no_interval_is_no_verdict():
    comp = compare([_report("a", SLOW[:4]), _report("b", FAST[:4])])
    tpot = comp.ratio("TPOT")
    assert tpot.ci_low is None and not tpot.significant
    assert tpot.verdict == "TPOT moved 78% lower: no conclusion (too few samples for an interval: 6 or more a side give one)"
    assert comp.verdicts() == []   # no verdict to list


def test_too_few_paired_rounds_say_so_instead_of_an_interval():
    order = ["a", "b", "b", "a"]
    comp = compare([_report("a", SLOW, rounds=order, sizes=[50, 50]), _report("b", FAST, rounds=order, sizes=[50, 50])])
    tpot = comp.ratio("TPOT")
    assert tpot.round_ratios and len(tpot.round_ratios) == 2 < MIN_ROUNDS
    assert tpot.ci_low is None and tpot.ci_high is None
    assert tpot.verdict.startswith("TPOT moved 78% lower: no conclusion (2 paired rounds give no interval: "
                                   f"{MIN_ROUNDS} or more do")
    _, rows = comp._rows()
    assert rows[0][0] == "TPOT" and rows[0][-1] == "-"   # the table's 95% CI column: none printed
    tps = comp.ratio("tokens/s")
    assert tps.ci_low is None and "2 paired rounds give no interval" in tps.verdict
