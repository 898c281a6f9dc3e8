"""The measurement window: sync edges, sensors read by the sampler, idle power, the report.

How a window's energy is computed, per sensor:

* coarse counter (NVML, ticks every ~100 ms): the sampler reads the counter every ~20 ms and sees
  when it ticks; each tick-to-tick period's energy is exact, and the window takes the periods inside
  it plus its share of the two edge periods (``periods.py``). The window's close waits for the two
  ticks after it (~0.1-0.2 s), since the counter publishes a period's energy when the period ends.
* fine counter (RAPL, AMD GPUs through amdsmi): the counter difference between reads taken right at
  the edges.
* power only (Jetson rails, GPUs without the counter): trapezoid integral of the raw samples.
"""

from __future__ import annotations

import bisect
import sys
import time
import warnings
from typing import Any

from .periods import counter_periods, counter_ticks, period_timeline, ticks_after, window_energy
from .report import DeviceTimeline, EnergyReport
from .sampler import Sampler, Series, integrate
from .sensor import Sensor

IDLE_SECONDS = 0.5
POWER_ONLY_REL_UNCERTAINTY = 0.05  # sampled power misses what happens between samples
TICKS_AFTER_WINDOW = 2  # the period covering the window's end, and the one after it (power outside)


class ShortWindowWarning(UserWarning):
    """The window is shorter than the energy counter can resolve."""


def synchronize(cuda_indices: list[int] | None) -> None:
    """Wait for queued CUDA work on the measured devices (nothing to wait for if CUDA never started)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    for index in cuda_indices if cuda_indices is not None else range(torch.cuda.device_count()):
        torch.cuda.synchronize(index)


def window_samples(series: Series, t0: float, t1: float) -> tuple[list[float], list[float]]:
    """The power samples inside [t0, t1]; the integral holds the first/last one out to the edges.

    The reads just outside the window see the power before the work started / after it ended, so
    interpolating towards them would shave a ramp off each edge of a window that brackets its work.
    """
    ts, ps = series.power_series()
    lo, hi = bisect.bisect_left(ts, t0), bisect.bisect_right(ts, t1)
    if hi > lo:
        return ts[lo:hi], ps[lo:hi]
    return ts, ps


def is_coarse_counter(sensor: Sensor) -> bool:
    return sensor.has_counter and sensor.counter_tick_s is not None


def sensor_energy(series: Series, t0: float, t1: float) -> dict[str, Any]:
    """Energy of one sensor over [t0, t1]: {energy_j, uncertainty_j, method, warning, timeline, peak_w}."""
    sensor = series.sensor
    out: dict[str, Any] = {"warning": None, "counter_delta_j": None, "peak_w": None}
    if sensor.has_counter and len(series.energy_j) >= 2:
        out["counter_delta_j"] = series.energy_j[-1] - series.energy_j[0]
    if is_coarse_counter(sensor) and len(series.energy_j) >= 2:
        periods = counter_periods(series, sensor.counter_tick_s)
        if periods:
            first = series.power_w[0] if series.power_w else None
            last = series.power_w[-1] if series.power_w else None
            result = window_energy(periods, t0, t1, first, last)
            inside = [p.power_w for p in periods if min(p.end, t1) > max(p.start, t0)]
            out.update(energy_j=result["energy_j"], uncertainty_j=result["uncertainty_j"], method=sensor.method,
                       timeline=period_timeline(periods, t0, t1), peak_w=max(inside) if inside else None)
            whole = sum(1 for p in periods if p.start >= t0 and p.end <= t1)
            if whole < 2:
                out["warning"] = (f"{sensor.name}: the window ({t1 - t0:.3g} s) spans fewer than two of the "
                                  f"energy counter's ~{sensor.counter_tick_s:g} s periods, so its energy rests on "
                                  "how the edge periods split - repeat the work for a longer window "
                                  "(%elana_energy STATEMENT does)")
            return out
    if sensor.has_counter and sensor.counter_tick_s is None and len(series.energy_j) >= 2:
        # read right at both edges (µs away): the plain difference, no interpolation
        delta = series.energy_j[-1] - series.energy_j[0]
        out.update(energy_j=delta, uncertainty_j=0.002 * abs(delta) + 1e-6, method=sensor.method,
                   timeline=series.power_series())
        return out
    ts, ps = window_samples(series, t0, t1)
    if ts:
        energy = integrate(ts, ps, t0, t1)
        unc = POWER_ONLY_REL_UNCERTAINTY * abs(energy) + _edge_uncertainty(ts, ps, t0, t1)
        method = sensor.method if not sensor.has_counter else f"{sensor.method} (counter unreadable: instant power)"
        out.update(energy_j=energy, uncertainty_j=unc, method=method, timeline=(ts, ps))
        return out
    out.update(energy_j=None, uncertainty_j=None, method=sensor.method, timeline=([], []))
    return out


def _edge_uncertainty(ts: list[float], ps: list[float], t0: float, t1: float) -> float:
    """Bound on the trapezoid's error: a step anywhere between two samples moves it by dt/2 x |dP|."""
    lo, hi = max(bisect.bisect_right(ts, t0) - 1, 0), min(bisect.bisect_left(ts, t1) + 1, len(ts))
    return sum((min(b, t1) - max(a, t0)) / 2 * abs(pb - pa) for a, b, pa, pb in
               zip(ts[lo:hi], ts[lo + 1:hi], ps[lo:hi], ps[lo + 1:hi]) if min(b, t1) > max(a, t0))


class EnergyWindow:
    """``with meter.window() as win: ...`` then ``win.report`` (filled on exit, also on exceptions)."""

    def __init__(self, meter: "EnergyMeter", label: str | None = None, sync: bool = True) -> None:
        self.meter = meter
        self.label = label
        self.sync = sync
        self.report: EnergyReport | None = None
        self._sampler: Sampler | None = None
        self.t_start: float | None = None

    def __enter__(self) -> "EnergyWindow":
        self.meter._check_open()
        if self.meter.measure_idle:
            self.meter.idle_power_w()
        if self.sync:
            synchronize(self.meter.cuda_indices)
        self._sampler = Sampler(self.meter.sensors, self.meter.sample_hz)
        self._sampler.read_all()
        if self.meter.sensors:
            self._sampler.start()
        self.t_start = time.perf_counter()
        return self

    def power_so_far(self) -> list[tuple[str, list[float], list[float]]]:
        """(sensor name, perf_counter s, W) read so far in this window (for the live view; any thread)."""
        sampler = self._sampler
        if sampler is None:
            return []
        out = []
        for series in list(sampler.series):
            t, w = series.power_series()
            n = min(len(t), len(w))
            if n >= 2:
                out.append((series.sensor.name, list(t[:n]), list(w[:n])))
        return out

    def __exit__(self, exc_type, exc, tb) -> bool:
        errors: list[str] = []
        try:
            if self.sync:
                try:
                    synchronize(self.meter.cuda_indices)
                except Exception as sync_exc:  # noqa: BLE001 - reported; the cell's own error wins
                    errors.append(f"CUDA synchronize failed: {type(sync_exc).__name__}: {sync_exc}")
                    if exc is None:
                        raise
        finally:
            t_end = time.perf_counter()
            interrupt = None
            try:
                wait_for_counters(self._sampler, t_end)
            except KeyboardInterrupt as ctrl_c:  # Ctrl-C while waiting for the counter: report what was read
                interrupt = ctrl_c
            finally:
                self._sampler.stop()
            self._sampler.read_all()
            self.report = build_report(self.meter, self._sampler.series, self.t_start, t_end, self.label, errors,
                                       interrupted=exc_type is KeyboardInterrupt or interrupt is not None)
            self._sampler = None
            if interrupt is not None:
                raise interrupt
        if self.report.warnings:
            # one constant text: Python keeps a registry entry per distinct warning text and location
            warnings.warn("the energy window spans fewer than two energy-counter periods (~0.1 s each), so its "
                          "energy rests on how the edge periods split; repeat the work for a longer window "
                          "(details: report.warnings)", ShortWindowWarning, stacklevel=2)
        return False


def wait_for_counters(sampler: Sampler, t_end: float) -> None:
    """Keep sampling until every coarse counter has ticked twice after ``t_end`` (bounded)."""
    coarse = [s for s in sampler.series if is_coarse_counter(s.sensor)]
    if not coarse or not sampler.running:
        return
    nominal = max(s.sensor.counter_tick_s for s in coarse)
    deadline = t_end + (TICKS_AFTER_WINDOW + 0.5) * nominal + 2 * sampler.period
    while time.perf_counter() < deadline:
        if all(s.error is not None or ticks_after(s, t_end) >= TICKS_AFTER_WINDOW for s in coarse):
            return
        time.sleep(sampler.period / 4)


def build_report(meter, all_series: list[Series], t0: float, t1: float, label: str | None,
                 errors: list[str] | None = None, interrupted: bool = False) -> EnergyReport:
    """Turn what the sampler read into an EnergyReport."""
    errors = list(errors or [])
    devices, timelines, warns = [], [], []
    for series in all_series:
        sensor = series.sensor
        end = t1
        if series.error is not None:
            errors.append(f"{series.error} (at +{series.error_t - t0:.3g} s; energy covers up to its last reading)")
            end = max(t0, min(t1, series.t[-1])) if series.t else t0
        result = sensor_energy(series, t0, end)
        if result["warning"]:
            warns.append(result["warning"])
        ts, ps = result["timeline"]
        peak = result["peak_w"]
        if peak is None:
            inside = [p for t, p in zip(ts, ps) if t0 <= t <= end]
            peak = max(inside) if inside else None
        idle = meter.idle_by_sensor.get(sensor.name)
        energy = result["energy_j"]
        devices.append({
            "name": sensor.name,
            "kind": sensor.kind,
            "cuda_index": getattr(sensor, "cuda_index", None),
            "counted_in_total": sensor.counted_in_total,
            "energy_j": energy,
            "uncertainty_j": result["uncertainty_j"],
            "avg_power_w": energy / (end - t0) if energy is not None and end > t0 else None,
            "peak_power_w": peak,
            "idle_power_w": idle,
            "net_energy_j": energy - idle * (t1 - t0) if energy is not None and idle is not None else None,
            "counter_delta_j": result["counter_delta_j"],
            "method": result["method"],
            "read_path": getattr(sensor, "read_path", None),
            "source": sensor.source or None,
            "counter_tick_s": _median_tick(series) if is_coarse_counter(sensor) else None,
            "reads": sum(1 for t in series.t if t0 <= t <= t1),
            "note": sensor.note or None,
            "failed": series.error,
        })
        timeline = DeviceTimeline(sensor.name, ts, ps, _scale(result, ts, ps, t0, end), sensor.counted_in_total)
        if is_coarse_counter(sensor):  # the steps come from the counter; keep what the power field said
            raw_t, raw_w = series.power_series()
            keep = [i for i, t in enumerate(raw_t) if t0 - 0.2 <= t <= t1 + 0.3]
            timeline.readings_t, timeline.readings_w = [raw_t[i] for i in keep], [raw_w[i] for i in keep]
        timelines.append(timeline)
    from ..core.environment import capture_environment

    report = EnergyReport(
        label=label, t_start=t0, t_end=t1, devices=devices, timelines=timelines,
        idle_note=meter.idle_note, reason=meter.reason, warnings=warns, errors=errors,
        sample_hz=meter.sample_hz, interrupted=interrupted,
    )
    cuda = list(getattr(meter, "cuda_indices", None) or [])
    return report.stamp(settings={"label": label, "sample_hz": meter.sample_hz, "cuda_devices": cuda},
                        environment=capture_environment(f"cuda:{cuda[0]}" if cuda else "cpu"))


def _median_tick(series: Series) -> float | None:
    """The counter's update period seen in this window (median gap between ticks)."""
    times = [tick[0] for tick in counter_ticks(series)]
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    return gaps[len(gaps) // 2] if gaps else None


def _scale(result: dict, ts: list[float], ps: list[float], t0: float, t1: float) -> float:
    """Factor that makes the timeline's integral over the window equal the window's energy."""
    raw = integrate(ts, ps, t0, t1) if ts else 0.0
    energy = result["energy_j"]
    return energy / raw if energy is not None and raw > 0 else 1.0


class EnergyMeter:
    """The energy sensors of this machine, measured in windows.

    ``devices``: CUDA-visible GPU indices (None = every visible GPU). Without an NVIDIA GPU the meter
    takes AMD GPUs through amdsmi (HIP-visible indices), without either it falls back to Jetson
    INA3221 rails; RAPL (CPU package, DRAM) is added where readable, reported apart from GPU energy.
    ``available`` / ``reason`` say whether anything can be measured.
    """

    def __init__(self, devices: list[int] | None = None, sample_hz: float = 50.0, *, cpu: bool = True,
                 measure_idle: bool = True, sensors: list[Sensor] | None = None) -> None:
        if sample_hz <= 0:
            raise ValueError(f"sample_hz must be positive, got {sample_hz}")
        self.sample_hz = float(sample_hz)
        self.measure_idle = measure_idle
        self.idle_by_sensor: dict[str, float] = {}
        self.idle_note: str | None = None
        self._idle_measured = False
        self._nvml = None
        self._amdsmi = None
        self._closed = False
        self.cuda_indices: list[int] | None = None
        if sensors is not None:
            self.sensors, self.reason = list(sensors), None if sensors else "no sensor given"
        else:
            self.sensors, self.reason = self._discover(devices, cpu)
        self.available = any(s.counted_in_total for s in self.sensors)
        if not self.available and self.reason is None:
            self.reason = "no energy sensor"

    def _discover(self, devices: list[int] | None, cpu: bool) -> tuple[list[Sensor], str | None]:
        from . import amd, jetson, nvml, rapl

        sensors: list[Sensor] = []
        gpus, why_gpu, self._nvml = nvml.discover(devices)
        why_amd = None
        if not gpus:  # no NVIDIA GPU: an AMD one through amdsmi (torch on ROCm calls it cuda:N too)
            gpus, why_amd, self._amdsmi = amd.discover(devices)
        if devices is not None and not gpus:
            raise ValueError(f"cannot measure GPU(s) {devices}: {why_gpu}; no AMD GPU ({why_amd})")
        sensors += gpus
        self.cuda_indices = [g.cuda_index for g in gpus] if gpus else None
        why_jetson = None
        if not gpus:
            rails, why_jetson = jetson.discover()
            sensors += rails
        why_cpu = None
        if cpu:
            zones, why_cpu = rapl.discover()
            has_main = any(s.counted_in_total for s in sensors)
            for zone in zones:
                zone.counted_in_total = not has_main
            sensors += zones
        amd_failed = why_amd not in (None, amd.NOT_INSTALLED, amd.NO_GPU)
        if any(s.counted_in_total for s in sensors):
            if amd_failed:  # amdsmi is there but failed: say so beside what was measured instead
                for s in sensors:
                    if s.counted_in_total:
                        s.note = "; ".join(filter(None, [s.note, f"AMD GPU not measured ({why_amd})"]))
            return sensors, None
        why = [f"no NVIDIA GPU ({why_gpu})"]
        if why_amd:
            why.append(f"no AMD GPU ({why_amd})")
        if why_jetson:
            why.append(f"{why_jetson} (Jetson)")
        why.append(f"no CPU RAPL ({why_cpu})" if cpu else "CPU RAPL not asked for")
        return sensors, "; ".join(why)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this EnergyMeter is closed")

    def window(self, label: str | None = None, sync: bool = True) -> EnergyWindow:
        """A measurement window (context manager); CUDA devices are synchronized at both edges."""
        self._check_open()
        return EnergyWindow(self, label=label, sync=sync)

    def idle_power_w(self) -> float | None:
        """Idle power of the counted sensors (W), measured once over ~0.5 s and reused."""
        self._check_open()
        if not self._idle_measured and self.sensors:
            self._measure_idle()
        if not self.idle_by_sensor:
            return None
        return sum(self.idle_by_sensor.get(s.name, 0.0) for s in self.sensors if s.counted_in_total)

    def _measure_idle(self) -> None:
        synchronize(self.cuda_indices)
        sampler = Sampler(self.sensors, self.sample_hz)
        sampler.read_all()
        sampler.start()
        t0 = time.perf_counter()
        t1 = None
        try:
            time.sleep(IDLE_SECONDS)
            t1 = time.perf_counter()
            wait_for_counters(sampler, t1)
        finally:
            t1 = t1 or time.perf_counter()
            sampler.stop()
            sampler.read_all()
        for series in sampler.series:
            if series.error is not None:
                continue
            energy = sensor_energy(series, t0, t1)["energy_j"]
            if energy is not None:
                self.idle_by_sensor[series.sensor.name] = energy / (t1 - t0)
        self._idle_measured = True
        self.idle_note = f"measured once over {t1 - t0:.2g} s before the first window, reused"

    def close(self) -> None:
        """Release NVML or amdsmi and what the sensors hold (a jtop client); idempotent."""
        if self._closed:
            return
        self._closed = True
        for sensor in self.sensors:
            try:
                sensor.close()
            except Exception:  # noqa: BLE001 - one sensor's clean-up never stops the others'
                pass
        if self._nvml is not None:
            from . import nvml

            nvml.release()
            self._nvml = None
        if self._amdsmi is not None:
            from . import amd

            amd.release()
            self._amdsmi = None

    def __enter__(self) -> "EnergyMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
