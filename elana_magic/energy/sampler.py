"""The background sampling thread ("elana-sampler") and the per-sensor series it fills.

One thread reads every sensor of a window at ``hz`` (instant power for the timeline, and the energy
counter where there is one, to see when it ticks). NVML and sysfs reads go through ctypes/os calls
that release the GIL, so the measured Python code barely notices the thread.
"""

from __future__ import annotations

import bisect
import threading
import time

from .sensor import Reading, Sensor


class Series:
    """Everything read from one sensor during a window (counters unwrapped)."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self.t: list[float] = []
        self.energy_j: list[float] = []   # aligned with t where the sensor has a counter
        self.power_w: list[float] = []    # aligned with t where the sensor has instant power
        self.error: str | None = None     # the first failure, once the sensor stops answering
        self.error_t: float | None = None
        self._wrap_offset = 0.0
        self._last_raw: float | None = None

    def add(self, reading: Reading) -> None:
        energy = reading.energy_j
        if energy is not None:
            wrap = self.sensor.counter_wrap_j
            if wrap and self._last_raw is not None and energy < self._last_raw:
                self._wrap_offset += wrap
            self._last_raw = energy
            energy += self._wrap_offset
            self.energy_j.append(energy)
        if reading.power_w is not None:
            self.power_w.append(reading.power_w)
        self.t.append(reading.t)

    def fail(self, exc: BaseException) -> None:
        self.error = f"{self.sensor.name}: {type(exc).__name__}: {exc}".rstrip(": ")
        self.error_t = time.perf_counter()

    def power_series(self) -> tuple[list[float], list[float]]:
        """(t, W): measured instant power, or power derived from counter differences."""
        if self.power_w:
            return self.t, self.power_w
        if len(self.energy_j) >= 2:
            mids = [(a + b) / 2 for a, b in zip(self.t, self.t[1:])]
            watts = [(e1 - e0) / max(t1 - t0, 1e-9) for t0, t1, e0, e1 in
                     zip(self.t, self.t[1:], self.energy_j, self.energy_j[1:])]
            return mids, watts
        return [], []


class Sampler:
    """Reads ``sensors`` every ``1/hz`` s on a thread named "elana-sampler" until ``stop()``."""

    def __init__(self, sensors: list[Sensor], hz: float = 50.0) -> None:
        if hz <= 0:
            raise ValueError(f"sample rate must be positive, got {hz}")
        self.period = 1.0 / hz
        self.series = [Series(s) for s in sensors]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read_all(self) -> None:
        """One reading of every sensor still answering (also called at the window's edges)."""
        for series in self.series:
            if series.error is not None:
                continue
            try:
                series.add(series.sensor.read())
            except Exception as exc:  # noqa: BLE001 - a failing sensor ends its series, not the window
                series.fail(exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="elana-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.perf_counter() + self.period
        while not self._stop.wait(max(0.0, next_t - time.perf_counter())):
            self.read_all()
            next_t += self.period
            now = time.perf_counter()
            if next_t < now:  # a slow read (NVML counter ~4 ms): skip, don't burst
                next_t = now + self.period

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            try:
                self._thread.join()
            except KeyboardInterrupt:  # the thread ends within one period anyway: wait for it, then obey
                self._thread.join()
                raise
            finally:
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def interp(ts: list[float], ys: list[float], x: float) -> float:
    """Linear interpolation, held flat beyond the ends."""
    i = bisect.bisect_left(ts, x)
    if i == 0:
        return ys[0]
    if i >= len(ts):
        return ys[-1]
    t0, t1 = ts[i - 1], ts[i]
    return ys[i - 1] if t1 == t0 else ys[i - 1] + (ys[i] - ys[i - 1]) * (x - t0) / (t1 - t0)


def integrate(ts: list[float], ys: list[float], a: float, b: float) -> float:
    """Signed integral of the piecewise-linear (ts, ys) over [a, b] (trapezoid on raw samples)."""
    if not ts or a == b:
        return 0.0
    if a > b:
        return -integrate(ts, ys, b, a)
    lo, hi = bisect.bisect_right(ts, a), bisect.bisect_left(ts, b)
    xs = [a, *ts[lo:hi], b]
    vs = [interp(ts, ys, a), *ys[lo:hi], interp(ts, ys, b)]
    return sum((x1 - x0) * (v0 + v1) / 2 for x0, x1, v0, v1 in zip(xs, xs[1:], vs, vs[1:]))
