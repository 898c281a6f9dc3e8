"""Summary statistics, the median's confidence interval and the stopping rule."""

import math

import numpy as np
import pytest

from elana_magic.core.stats import StoppingRule, median_ci, relative_ci_halfwidth, summarize


def test_summarize_matches_numpy():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.0]
    s = summarize(xs)
    assert s["n"] == 7
    assert s["median"] == 4.0 and s["mean"] == pytest.approx(np.mean(xs))
    assert s["std"] == pytest.approx(np.std(xs))
    assert s["p90"] == pytest.approx(np.percentile(xs, 90))
    assert s["p99"] == pytest.approx(np.percentile(xs, 99))
    assert s["ci95_low"] <= s["median"] <= s["ci95_high"]
    assert summarize(xs, scale=1e3)["median"] == 4000.0


def test_empty_and_small_samples():
    assert summarize([])["n"] == 0 and summarize([])["median"] is None
    assert median_ci([1, 2, 3]) is None
    assert math.isinf(relative_ci_halfwidth([1, 2]))


def test_median_ci_covers_true_median():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        lo, hi = median_ci(rng.exponential(size=50))
        hits += lo <= math.log(2) <= hi
    assert 0.92 <= hits / 400 <= 0.99


def test_stopping_rule():
    rule = StoppingRule(min_count=3, min_time=1.0, rel_ci=0.01)
    assert not rule.done(2, 5.0, [1.0] * 2)
    assert rule.done(3, 1.5, [1.0, 2.0, 3.0]) and "min time" in rule.reason
    tight = [1.0] * 50
    assert rule.done(50, 0.1, tight) and "CI" in rule.reason
    floor = StoppingRule(min_count=3, min_time=1.0, floor_time=2.0)
    assert not floor.done(50, 1.5, tight)
    capped = StoppingRule(min_count=3, min_time=100.0, max_time=2.0, rel_ci=0)
    assert capped.done(3, 2.5, [1.0, 5.0, 9.0]) and "max time" in capped.reason


def test_ratio_intervals_hold_their_point():
    from elana_magic.core.stats import paired_ratio, ratio_of_medians_ci

    for seed in range(30):  # few, tied samples: the bootstrap's percentiles alone can miss the point
        rng = np.random.default_rng(seed)
        point, low, high = ratio_of_medians_ci(rng.integers(1, 4, 7), rng.integers(1, 4, 7))
        assert low <= point <= high
    point, low, high = paired_ratio([0.5, 2.0, 1.0])
    assert point == pytest.approx(1.0) and low < point < high
    assert paired_ratio([1e-300, 1e300]) == (pytest.approx(1.0), None, None)  # too wide for a float
