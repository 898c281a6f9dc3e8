"""The NVML energy counter as a sequence of periods, and a window's share of them.

Measured on an H200 (benchmarks/results/energy_accuracy.json, ``step_response``): the counter and the
"instant" power field both change once every ~100 ms, and the value published at a tick is the
average power of the period that just ended. So the sensor knows, exactly, the energy of each period
(tick to tick) and nothing finer. A window [t0, t1] gets:

* every period wholly inside it;
* of an edge period, its energy minus what the power outside the window drew in the part of the
  period outside it (that power taken from the adjacent period outside: for a window around work on
  an idle GPU that is idle power, for a window inside a steady load it is the load's power).

The sampler reads the counter every ~20 ms, so each tick's time is known to half a read gap.
"""

from __future__ import annotations

import statistics
from typing import Any, NamedTuple

from .sampler import Series


class Period(NamedTuple):
    start: float      # perf_counter s
    end: float
    energy_j: float
    jitter_s: float   # half the read gap around the tick that ends it

    @property
    def power_w(self) -> float:
        return self.energy_j / max(self.end - self.start, 1e-9)


def counter_ticks(series: Series) -> list[tuple[float, float, float, float]]:
    """[(time, half-width, value before, value after)] where the counter changed between two reads."""
    t, e = series.t, series.energy_j
    n = min(len(t), len(e))
    return [((t[j - 1] + t[j]) / 2, (t[j] - t[j - 1]) / 2, e[j - 1], e[j]) for j in range(1, n) if e[j] != e[j - 1]]


def ticks_after(series: Series, t: float) -> int:
    """How many counter changes were seen after time ``t`` (cheap: scans the series' tail)."""
    times, values = series.t, series.energy_j
    i = min(len(times), len(values)) - 1
    count = 0
    while i > 0 and times[i - 1] >= t:
        count += values[i] != values[i - 1]
        i -= 1
    return count


def regular_tick_times(times: list[float], halves: list[float]) -> tuple[list[float], list[float]] | None:
    """The ticks fitted to an even grid (the counter ticks at a steady rate: 94-105 ms on an H200).

    Each tick is seen only to within half a read gap; a least-squares grid through all of them
    locates each far better. None when the gaps are not even (a missed or extra tick).
    """
    n = len(times)
    if n < 3:
        return None
    gaps = [b - a for a, b in zip(times, times[1:])]
    typical = statistics.median(gaps)
    if any(not 0.6 * typical < g < 1.4 * typical for g in gaps):
        return None
    mean_k, mean_t = (n - 1) / 2, sum(times) / n
    slope = sum((k - mean_k) * (t - mean_t) for k, t in enumerate(times)) / sum((k - mean_k) ** 2 for k in range(n))
    fitted = [mean_t + slope * (k - mean_k) for k in range(n)]
    if any(abs(f - t) > h + 0.002 for f, t, h in zip(fitted, times, halves)):
        return None  # the grid disagrees with what was seen: keep the raw ticks
    spread = statistics.pstdev([f - t for f, t in zip(fitted, times)])
    return fitted, [max(spread, 0.001)] * n


def counter_periods(series: Series, nominal_s: float) -> list[Period]:
    """Tick-to-tick periods; the first one (before the first tick seen) assumes the typical length."""
    ticks = counter_ticks(series)
    if not ticks:
        return []
    fitted = regular_tick_times([t[0] for t in ticks], [t[1] for t in ticks])
    if fitted is not None:
        ticks = [(t, half, before, after) for (t, half), (_, _, before, after) in zip(zip(*fitted), ticks)]
    gaps = [b[0] - a[0] for a, b in zip(ticks, ticks[1:])]
    typical = statistics.median(gaps) if gaps else nominal_s
    t_first, half_first, before_first, after_first = ticks[0]
    periods = [Period(t_first - typical, t_first, after_first - before_first, half_first)]
    for (t_prev, _, _, v_prev), (t_next, half, _, v_next) in zip(ticks, ticks[1:]):
        periods.append(Period(t_prev, t_next, v_next - v_prev, half))
    return periods


def window_energy(periods: list[Period], t0: float, t1: float, power_before_w: float | None,
                  power_after_w: float | None) -> dict[str, Any]:
    """{energy_j, uncertainty_j, covered} of [t0, t1] from the periods (see the module's docstring).

    ``power_before_w`` / ``power_after_w``: the power outside the window where no period is known
    (the sensor's reading at the window's opening, the last reading at its close).
    """
    energy, uncertainty = 0.0, 0.002  # the counter counts mJ: 1 mJ at each end
    for i, p in enumerate(periods):
        overlap = min(p.end, t1) - max(p.start, t0)
        if overlap <= 0:
            continue
        out_before, out_after = max(0.0, t0 - p.start), max(0.0, p.end - t1)
        if out_before == 0 and out_after == 0:
            energy += p.energy_j
            continue
        p_before = periods[i - 1].power_w if i > 0 else (power_before_w if power_before_w is not None else p.power_w)
        p_after = (periods[i + 1].power_w if i + 1 < len(periods)
                   else power_after_w if power_after_w is not None else p.power_w)
        inside = p.energy_j - p_before * out_before - p_after * out_after
        inside = min(max(inside, 0.0), p.energy_j)
        uniform = p.energy_j * overlap / (p.end - p.start)
        energy += inside
        # how the edge period's energy splits is a model: half the gap to the uniform split, plus
        # where exactly the tick fell
        uncertainty += 0.5 * abs(inside - uniform) + p.jitter_s * abs(p.power_w - (p_after if out_after else p_before))
    covered = (periods[0].start, periods[-1].end) if periods else (t1, t1)
    if t0 < covered[0] and power_before_w is not None:
        gap = min(covered[0], t1) - t0
        energy += power_before_w * gap
        uncertainty += 0.5 * power_before_w * gap
    if t1 > covered[1]:
        held = power_after_w if power_after_w is not None else (periods[-1].power_w if periods else None)
        if held is not None:
            gap = t1 - max(covered[1], t0)
            energy += held * gap
            uncertainty += 0.5 * held * gap
    return {"energy_j": energy, "uncertainty_j": uncertainty, "covered": covered}


def period_timeline(periods: list[Period], t0: float, t1: float) -> tuple[list[float], list[float]]:
    """The periods around [t0, t1] as steps: (t, W) with two points per period."""
    ts: list[float] = []
    ps: list[float] = []
    for p in periods:
        if p.end < t0 - 0.2 or p.start > t1 + 0.2:
            continue
        ts += [p.start, p.end]
        ps += [p.power_w, p.power_w]
    return ts, ps
