"""Energy windows over NVIDIA GPUs (NVML), AMD GPUs (amdsmi), Jetson rails (INA3221) and CPUs (RAPL).

    from elana_magic.energy import EnergyMeter
    with EnergyMeter() as meter:
        with meter.window(label="prefill") as win:
            model(**inputs)
        print(win.report.energy_j, win.report.uncertainty_j)

``measure_energy(func)`` repeats ``func`` until the window is long enough and reports per call.
"""

from __future__ import annotations

import math
import time
from typing import Callable

from ..core import defaults
from .report import EnergyReport
from .window import EnergyMeter, EnergyWindow, ShortWindowWarning

__all__ = ["EnergyMeter", "EnergyReport", "EnergyWindow", "ShortWindowWarning", "measure_energy"]

MIN_WINDOW_S = defaults.ENERGY_MIN_TIME_S  # ~10 ticks of the NVML energy counter


def measure_energy(func: Callable[[], object], *, meter: EnergyMeter | None = None, min_time: float = MIN_WINDOW_S,
                   max_runs: int = 10_000_000, label: str | None = None) -> EnergyReport:
    """Call ``func`` in an energy window, repeated (as %timeit does) until the window lasts ``min_time``.

    Trial runs, synchronized like the window, set the count; the figures are per call
    (``report.executions`` calls in one window).
    """
    own = meter is None
    meter = meter or EnergyMeter()
    try:
        if meter.measure_idle:
            meter.idle_power_w()
        runs = _autorange(func, meter, min_time, max_runs)
        with meter.window(label=label) as win:
            for _ in range(runs):
                func()
        return win.report.per_execution(runs)
    finally:
        if own:
            meter.close()


def _autorange(func: Callable[[], object], meter: EnergyMeter, min_time: float, max_runs: int) -> int:
    """How many calls fill ``min_time``: time 1, 10, 100... calls (GPU synchronized) until 0.2 s or more."""
    from .window import synchronize

    runs = 1
    while True:
        synchronize(meter.cuda_indices)
        start = time.perf_counter()
        for _ in range(runs):
            func()
        synchronize(meter.cuda_indices)
        elapsed = time.perf_counter() - start
        if elapsed >= min(0.2, min_time) or runs >= max_runs:
            break
        runs = min(max_runs, runs * 10)
    if elapsed >= min_time:
        return runs
    return min(max_runs, max(runs, math.ceil(runs * min_time * 1.05 / max(elapsed, 1e-9))))
