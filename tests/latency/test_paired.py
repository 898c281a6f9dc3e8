"""Paired A/B: several models measured in alternating rounds in one call."""

from __future__ import annotations

import copy

import pytest
from IPython.core.error import UsageError

from elana_magic.core.compare import Comparison
from elana_magic.latency import LatencyReport, measure_paired
from elana_magic.latency.session import GenerationInputError

FAST = dict(warmup=0, repeats=4, min_time=0.0, progress=False, energy=False, prompt_len=8, gen_len=9)


@pytest.fixture
def pruned(tiny_llama):
    model = copy.deepcopy(tiny_llama)
    model.model.layers = model.model.layers[:1]
    model.config.num_hidden_layers = 1
    return model


def test_paired_rounds_alternate_and_both_reports_come_back(tiny_llama, pruned):
    comp = measure_paired([tiny_llama, pruned], labels=["full", "pruned"], rounds=3, phases=["tpot", "ttft"], **FAST)
    assert isinstance(comp, Comparison) and comp.labels == ["full", "pruned"]
    assert comp.rounds == ["full", "pruned", "pruned", "full", "full", "pruned"]
    full, cut = comp.reports
    assert isinstance(full, LatencyReport) and isinstance(cut, LatencyReport)
    assert full.label == "full" and cut.label == "pruned" and full.rounds == cut.rounds == comp.rounds
    # every round added samples: 3 rounds x ceil(4/3)=2 passes x 8 decode steps
    assert full.tpot_ms["n"] == len(full.tpot_samples_ms) == 3 * 2 * 8
    assert full.fingerprint["hash"] != cut.fingerprint["hash"]
    assert comp.ratio("TPOT").ci_low is not None and comp.ratio("TTFT").ratio is not None
    assert any("3 alternating rounds" in n for n in full.notes)
    assert tiny_llama.config.num_hidden_layers == 2 and len(tiny_llama.model.layers) == 2  # the original untouched


def test_paired_refuses_one_model_or_the_same_twice(tiny_llama):
    with pytest.raises(GenerationInputError, match="at least two"):
        measure_paired([tiny_llama], **FAST)
    with pytest.raises(GenerationInputError, match="the same model is given twice"):
        measure_paired([tiny_llama, tiny_llama], **FAST)


def test_paired_magic(ip, tiny_llama, pruned):
    ip.user_ns.update(a=tiny_llama, b=pruned)
    comp = ip.run_line_magic("elana_latency", "a b --tpot --prompt-len 8 --gen-len 9 --no-energy --warmup 0 "
                                              "--repeats 2 --min-time 0 --rounds 2 -o -q")
    assert comp.rounds == ["a", "b", "b", "a"] and [r.label for r in comp.reports] == ["a", "b"]
    h = ip.run_line_magic("elana_history", "-o -q")
    assert [e.label for e in h.entries] == ["a", "b"]  # each model's report joins the history
    with pytest.raises(UsageError, match="one name per model"):
        ip.run_line_magic("elana_latency", "a b --label x --tpot --gen-len 3")
    with pytest.raises(UsageError, match="the same model is given twice"):
        ip.run_line_magic("elana_latency", "a a --tpot --gen-len 3 --no-energy")


class FakeMeter:
    """An energy meter the caller owns: windows that measure nothing, and a count of close() calls."""

    available, reason, cuda_indices = True, None, None

    def __init__(self):
        self.closed, self.windows = 0, 0

    def window(self, label=None, sync=True):
        import contextlib
        import types

        self.windows += 1
        return contextlib.nullcontext(types.SimpleNamespace(report=None))

    def close(self):
        self.closed += 1


def test_a_meter_the_caller_passed_in_stays_open(tiny_llama, pruned):
    """Issue 22: measure_paired (and measure_latency, a grid) use a meter given with meter= and leave it open."""
    from elana_magic.latency import measure_latency

    meter = FakeMeter()
    fast = {**FAST, "energy": None, "repeats": 2}
    measure_paired([tiny_llama, pruned], labels=["full", "pruned"], rounds=2, phases=["tpot"], meter=meter, **fast)
    assert meter.windows > 0 and meter.closed == 0
    measure_latency(tiny_llama, phases=["ttft"], meter=meter, **fast)
    measure_latency(tiny_llama, phases=["ttft"], batch=[1, 2], meter=meter, **fast)
    assert meter.closed == 0
