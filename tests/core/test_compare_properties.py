"""Property: whatever figures a measurement produces, a comparison's point lies inside its interval and
no view of it raises (issue 20: the chart drew ``ratio - ci_low`` < 0 as an error bar and crashed)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elana_magic.core.compare import compare
from elana_magic.latency import LatencyReport

# latencies in ms: from a timer tick to minutes, with zeros (a coarse clock) and huge spreads
value = st.one_of(st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False),
                  st.sampled_from([0.0, 1e-9, 1e-3, 1.0, 20.0, 1e9]))


@st.composite
def samples_and_rounds(draw, n_rounds: int | None):
    kind = draw(st.sampled_from(["empty", "one", "identical", "any", "any"]))
    if kind == "empty":
        xs: list[float] = []
    elif kind == "one":
        xs = [draw(value)]
    elif kind == "identical":
        xs = [draw(value)] * draw(st.integers(2, 30))
    else:
        xs = draw(st.lists(value, min_size=0, max_size=40))
    rounds = None
    if n_rounds and len(xs) >= n_rounds:   # tiny rounds too: one sample each
        cuts = sorted(draw(st.lists(st.integers(1, len(xs) - 1), min_size=n_rounds - 1, max_size=n_rounds - 1,
                                    unique=True))) if n_rounds > 1 else []
        rounds = [b - a for a, b in zip([0] + cuts, cuts + [len(xs)])]
    return xs, rounds


def _median(draw, xs: list[float]) -> float | None:
    how = draw(st.sampled_from(["samples", "samples", "none", "other"]))
    if how == "none" or (how == "samples" and not xs):
        return None
    return float(np.median(xs)) if how == "samples" else draw(value)   # "other": saved by another version


@st.composite
def latency_report(draw, label: str, n_rounds: int | None):
    fields: dict = {"ttft_ms": {"n": 0}, "ttlt_ms": {"n": 0}}
    sizes = {}
    for key in ("ttft", "tpot"):
        xs, rounds = draw(samples_and_rounds(n_rounds))
        fields[f"{key}_samples_ms"] = xs
        fields[f"{key}_ms"] = {"n": len(xs), "median": _median(draw, xs)}
        if rounds:
            sizes[key] = rounds
    maybe = st.one_of(st.none(), value)
    energy = {"tokens_per_s": draw(maybe), "tokens_per_j": draw(maybe), "j_per_token": draw(maybe)}
    # the report's fields, not the report: hypothesis prints them when a case fails
    return dict(label=label, model="M", device="cpu", device_name="cpu", engine="eager", batch=1,
                prompt_len=8, gen_len=9, phases=["ttft", "tpot"], energy=energy, roofline={"mbu": draw(maybe)},
                extra={"round_sizes": sizes} if sizes else {}, **fields)


@st.composite
def report_pair(draw):
    n_rounds = draw(st.sampled_from([None, 1, 2, 3, 8]))   # the same number of rounds: a paired measurement
    count = draw(st.integers(2, 3))
    return [draw(latency_report(f"r{i}", n_rounds)) for i in range(count)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(report_pair())
def test_point_inside_its_interval_and_every_view_renders(reports):
    comp = compare([LatencyReport(**fields) for fields in reports])
    for r in comp.ratios:
        assert (r.ci_low is None) == (r.ci_high is None), r
        if r.ci_low is not None and r.ratio is not None:
            assert math.isfinite(r.ci_low) and math.isfinite(r.ci_high), r
            assert 0 < r.ci_low <= r.ratio <= r.ci_high, r
        if r.round_ratios and r.ci_low is not None:   # paired: the point is the rounds' geometric mean
            assert math.isclose(r.ratio, math.exp(np.mean(np.log(r.round_ratios))), rel_tol=1e-9)
    comp.figure()
    assert "elana-compare" in comp.to_html()
    assert comp.to_text().startswith("elana compare")
    df = comp.to_dataframe()
    assert len(df) == len(comp.ratios)
    if len(df):
        assert all(df[c].dtype.kind == "f" for c in ("baseline", "value", "ratio", "ci_low", "ci_high"))


def test_ratios_beyond_the_chart_are_drawn_at_its_edge():
    """A 1e263 ratio (an MBU of 5e-264 saved by a report) once overflowed the log axis's tick labels."""
    fields = dict(model="M", device="cpu", device_name="cpu", engine="eager", batch=1, prompt_len=8, gen_len=9,
                  phases=["ttft", "tpot"], energy={}, extra={}, ttft_ms={"n": 0}, ttlt_ms={"n": 0},
                  tpot_ms={"n": 0}, ttft_samples_ms=[], tpot_samples_ms=[])
    comp = compare([LatencyReport(label="a", roofline={"mbu": 5.568847938289125e-264}, **fields),
                    LatencyReport(label="b", roofline={"mbu": 1.0}, **fields)])
    assert comp.ratio("MBU").ratio > 1e200
    comp.figure().canvas.draw()
