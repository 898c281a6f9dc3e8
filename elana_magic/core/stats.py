"""Summary statistics of timing samples, and the confidence interval of the median.

Percentiles interpolate linearly (numpy's default, as optimum-benchmark and vLLM report them); the
standard deviation is the population one (ddof=0). The median's 95% interval is distribution-free:
the order statistics whose ranks bracket n/2 by 1.96·sqrt(n)/2 (the binomial sign-test interval),
so it makes no normality assumption about latencies, which are skewed.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

Z95 = 1.959963984540054


def median_ci(samples: Sequence[float], z: float = Z95) -> tuple[float, float] | None:
    """A 95% confidence interval of the median, or None with fewer than 6 samples (too few to bracket)."""
    xs = np.sort(np.asarray(samples, dtype=float))
    n = xs.size
    if n < 6:
        return None
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)) - 1)   # 1-based rank floor(n/2 - half) -> 0-based
    hi = min(n - 1, int(math.ceil(n / 2 + half)))   # 1-based rank ceil(1 + n/2 + half) -> 0-based
    return float(xs[lo]), float(xs[hi])


def summarize(samples: Iterable[float], scale: float = 1.0) -> dict[str, float | int | None]:
    """``{n, mean, median, std, p90, p99, ci95_low, ci95_high}`` of ``samples`` times ``scale``."""
    xs = np.asarray(list(samples), dtype=float) * scale
    if xs.size == 0:
        return {"n": 0, "mean": None, "median": None, "std": None, "p90": None, "p99": None,
                "ci95_low": None, "ci95_high": None}
    ci = median_ci(xs)
    return {
        "n": int(xs.size),
        "mean": float(xs.mean()),
        "median": float(np.median(xs)),
        "std": float(xs.std()),
        "p90": float(np.percentile(xs, 90)),
        "p99": float(np.percentile(xs, 99)),
        "ci95_low": ci[0] if ci else None,
        "ci95_high": ci[1] if ci else None,
    }


def relative_ci_halfwidth(samples: Sequence[float]) -> float:
    """Half the median's 95% interval over the median (inf when it cannot be computed yet)."""
    ci = median_ci(samples)
    if ci is None:
        return math.inf
    med = float(np.median(samples))
    return math.inf if med <= 0 else (ci[1] - ci[0]) / 2 / med


class StoppingRule:
    """When to stop repeating: at least ``min_count`` runs and ``min_time`` seconds, or earlier once the
    median's 95% interval is within ``rel_ci`` of it (still after ``min_count`` runs and ``floor_time``
    seconds, e.g. an energy window's minimum); never past ``max_count`` runs or ``max_time`` seconds."""

    def __init__(self, min_count: int = 5, min_time: float = 1.0, rel_ci: float = 0.01,
                 floor_time: float = 0.0, max_count: int = 100_000, max_time: float | None = None):
        self.min_count, self.min_time, self.rel_ci = min_count, min_time, rel_ci
        self.floor_time = floor_time
        self.max_count = max(max_count, min_count)
        self.max_time = max(min_time, floor_time) * 10 + 10 if max_time is None else max_time
        self.reason = ""

    def done(self, count: int, elapsed: float, samples: Sequence[float]) -> bool:
        if count >= self.max_count:
            self.reason = f"max count {self.max_count}"
            return True
        if elapsed >= self.max_time and count >= 1:
            self.reason = f"max time {self.max_time:g} s"
            return True
        if count < self.min_count or elapsed < self.floor_time:
            return False
        if elapsed >= self.min_time:
            self.reason = "min count and min time reached"
            return True
        if self.rel_ci > 0 and relative_ci_halfwidth(samples) <= self.rel_ci:
            self.reason = f"median's 95% CI within {self.rel_ci:.0%}"
            return True
        return False


# -- comparing two sets of samples -----------------------------------------------------------------
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_MAX_SAMPLES = 2000   # larger sample sets are thinned (evenly, in order) before resampling


def _thinned(xs: np.ndarray, limit: int) -> np.ndarray:
    if xs.size <= limit:
        return xs
    return xs[np.linspace(0, xs.size - 1, limit).round().astype(int)]


def ratio_of_medians_ci(baseline: Sequence[float], other: Sequence[float], level: float = 0.95,
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float, float] | None:
    """``(median(other) / median(baseline), low, high)``: the ratio with its percentile-bootstrap
    interval (both sample sets resampled independently, seeded, so the same samples give the same
    interval), widened where needed to hold the ratio itself. None with fewer than 6 finite samples
    on either side, a non-positive median or a ratio that is not finite."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(other, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 6 or b.size < 6:
        return None
    med_a, med_b = float(np.median(a)), float(np.median(b))
    point = med_b / med_a if med_a > 0 and med_b > 0 else math.nan
    if not math.isfinite(point) or point <= 0:
        return None
    rng = np.random.default_rng(seed)
    boot = []
    for xs in (_thinned(a, BOOTSTRAP_MAX_SAMPLES), _thinned(b, BOOTSTRAP_MAX_SAMPLES)):
        idx = rng.integers(0, xs.size, size=(resamples, xs.size))
        boot.append(np.median(xs[idx], axis=1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = boot[1] / boot[0]
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    if ratios.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = (float(x) for x in np.percentile(ratios, [tail, 100 - tail]))
    # the median's bootstrap distribution is discrete (few distinct order statistics): with few or
    # tied samples its percentiles can miss the observed ratio, which must lie inside its own interval
    return point, min(low, point), max(high, point)


MIN_ROUNDS = 3   # paired rounds an interval needs (2 degrees of freedom: t = 4.3)

# Student's t, 97.5% quantile, for 1-30 degrees of freedom (beyond: Cornish-Fisher from the normal)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.37 / df


def round_ratios(baseline: Sequence[float], other: Sequence[float], baseline_rounds: Sequence[int] | None,
                 other_rounds: Sequence[int] | None) -> list[float] | None:
    """median(other) / median(baseline) round by round, for a paired measurement (the same number of
    rounds on both sides, ``*_rounds`` the samples in each, in order); None where they aren't paired."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(other, dtype=float)
    parts = []
    for xs, sizes in ((a, baseline_rounds), (b, other_rounds)):
        if not sizes or sum(sizes) != xs.size or min(sizes) < 1:
            return None
        parts.append(np.split(xs, np.cumsum(sizes)[:-1]))
    if len(parts[0]) != len(parts[1]) or len(parts[0]) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = [float(np.median(y) / np.median(x)) for x, y in zip(*parts)]
    return out if all(math.isfinite(r) and r > 0 for r in out) else None


def paired_ratio(ratios: Sequence[float]) -> tuple[float, float | None, float | None]:
    """``(point, low, high)`` of the ratio from per-round ratios: the geometric mean of the rounds' ratios
    and its 95% interval, Student's t on their logarithms (so the point is the interval's centre on a
    log scale). The rounds, not the samples, are the replicates: samples of one round share its
    conditions (host load, clocks, temperature) and are not independent, so with few rounds that
    disagree the interval is wide. The interval is None with fewer than ``MIN_ROUNDS`` rounds (2 rounds
    have one degree of freedom: t = 12.7, and gave "95% CI 0.000-420139") or where it does not fit in a float."""
    logs = np.log(np.asarray(ratios, dtype=float))
    centre = float(logs.mean())
    if logs.size < MIN_ROUNDS:
        return math.exp(centre), None, None
    half = _t975(logs.size - 1) * float(np.std(logs, ddof=1)) / math.sqrt(logs.size)
    point = math.exp(centre)
    try:
        low, high = math.exp(centre - half), math.exp(centre + half)
    except OverflowError:
        return point, None, None
    if low <= 0 or not math.isfinite(high):
        return point, None, None
    return point, min(low, point), max(high, point)


def paired_ratio_ci(ratios: Sequence[float]) -> tuple[float, float] | None:
    """The 95% interval of ``paired_ratio`` alone (None where it does not fit in a float)."""
    _, low, high = paired_ratio(ratios)
    return None if low is None else (low, high)


NOISE_THRESHOLD = 0.01  # a change whose interval reaches inside ±1% is called noise (criterion.rs's default)


def beyond_noise(low: float | None, high: float | None, noise: float = NOISE_THRESHOLD) -> bool:
    """The whole interval lies beyond the noise threshold, on one side: a real change."""
    return low is not None and high is not None and (high < 1 - noise or low > 1 + noise)


NO_INTERVAL = "too few samples for an interval"


def ratio_verdict(name: str, ratio: float | None, low: float | None = None, high: float | None = None,
                  noise: float = NOISE_THRESHOLD, no_interval: str = NO_INTERVAL) -> str:
    """In words: 'TPOT 12% lower (95% CI 10-14%)', 'TPOT 3.1% higher (...)', or 'no difference beyond
    noise' when the interval spans 1 or reaches inside ±``noise`` (samples within one run are not
    independent, so an interval of pooled samples can be narrower than run-to-run variation: changes
    smaller than the threshold are not called, as criterion.rs does); without an interval no verdict:
    the figure moved and no conclusion follows ("TTFT moved 52% lower: no conclusion (too few samples
    for an interval)"; ``no_interval`` says why there is none and what would give one)."""
    if ratio is None:
        return f"{name}: not comparable"
    if low is None or high is None:
        return f"{name} moved {change_words(ratio)}: no conclusion ({no_interval})"
    if low <= 1 <= high:
        return f"{name}: no difference beyond noise (ratio {ratio:.3f}, 95% CI {low:.3f}-{high:.3f})"
    if not beyond_noise(low, high, noise):
        return (f"{name}: no difference beyond noise (ratio {ratio:.4f}, 95% CI {low:.4f}-{high:.4f}: "
                f"a change within the ±{noise:.0%} noise threshold)")
    if ratio >= 2:
        return f"{name} {ratio:.3g}x (95% CI {low:.3g}-{high:.3g}x)"
    lo, hi = sorted((abs(low - 1), abs(high - 1)))
    return f"{name} {change_words(ratio)} (95% CI {_pct(lo)}-{_pct(hi)}%)"


def change_words(ratio: float) -> str:
    """A ratio as a change: '12% lower', '3.1% higher', '2.33x', 'unchanged'."""
    if ratio == 1:
        return "unchanged"
    if ratio >= 2:
        return f"{ratio:.3g}x"
    return f"{_pct(abs(ratio - 1))}% {'lower' if ratio < 1 else 'higher'}"


def _pct(x: float) -> str:
    p = round(x * 100, 1)
    return f"{p:.0f}" if p >= 10 else f"{p:.1f}"
