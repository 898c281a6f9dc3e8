"""Energy windows over NVIDIA GPUs (NVML), Jetson rails (INA3221) and CPUs (RAPL).

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

from .report import EnergyReport
from .window import EnergyMeter, EnergyWindow, ShortWindowWarning

__all__ = ["EnergyMeter", "EnergyReport", "EnergyWindow", "ShortWindowWarning", "measure_energy"]

MIN_WINDOW_S = 1.0  # ~10 ticks of the NVML energy counter


def measure_energy(func: Callable[[], object], *, meter: EnergyMeter | None = None, min_time: float = MIN_WINDOW_S,
                   max_runs: int = 1_000_000, label: str | None = None) -> EnergyReport:
    """Call ``func`` in an energy window, repeated (as %timeit does) until the window lasts ``min_time``.

    One trial call sets the count; the reported figures are per call (``report.executions`` calls).
    """
    own = meter is None
    meter = meter or EnergyMeter()
    try:
        meter.idle_power_w() if meter.measure_idle else None
        start = time.perf_counter()
        func()
        runs = 1
        single = time.perf_counter() - start
        if single < min_time:
            runs = min(max_runs, max(2, math.ceil(min_time / max(single, 1e-7))))
        with meter.window(label=label) as win:
            for _ in range(runs):
                func()
        return win.report.per_execution(runs)
    finally:
        if own:
            meter.close()
