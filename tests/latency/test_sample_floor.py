"""The sample floor: no median reported from a handful of samples as if firm."""

from __future__ import annotations

from elana_magic.core import defaults
from elana_magic.latency import measure_latency, measure_paired

QUICK = dict(prompt_len=8, gen_len=2, warmup=0, progress=False, energy=False)


def test_a_phase_measures_to_the_floor(tiny_llama):
    rep = measure_latency(tiny_llama, phases=["ttft"], repeats=3, min_time=0.01, **QUICK)
    assert rep.ttft_ms["n"] >= defaults.SAMPLE_FLOOR
    assert not any("under the floor" in n for n in rep.notes)


def test_forced_fewer_samples_carry_a_note(tiny_llama):
    rep = measure_latency(tiny_llama, phases=["ttft"], repeats=3, min_time=0, **QUICK)
    assert rep.ttft_ms["n"] == 3
    assert f"the TTFT median rests on 3 samples, under the floor of {defaults.SAMPLE_FLOOR}" in " ".join(rep.notes)


def test_paired_rounds_reach_the_floor_together(tiny_llama):
    import copy

    comp = measure_paired([tiny_llama, copy.deepcopy(tiny_llama)], rounds=2, phases=["ttft"], repeats=2,
                          min_time=0.01, **QUICK)
    for rep in comp.reports:
        assert rep.ttft_ms["n"] >= defaults.SAMPLE_FLOOR
        assert not any("under the floor" in n for n in rep.notes)
