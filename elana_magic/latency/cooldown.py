"""Steady rounds: ``cooldown`` between the rounds of a paired A/B and between a grid's cells.

``cooldown=S`` sleeps S seconds before each round (or cell) after the first. ``cooldown="auto"`` waits
until the GPU's power and temperature are back near the idle read when the measurement started: power
at most ``POWER_BAND`` (10%) or ``POWER_BAND_W`` (15 W) above idle, whichever is larger, and temperature
at most ``TEMPERATURE_BAND_C`` (3 C) above it, polled through NVML every ``POLL_S`` (0.25 s), for at most
``CAP_S`` (60 s). Without NVML (a CPU) "auto" waits nothing and says so once in the notes.

Whatever the setting, where NVML answers, the power and temperature at the start of each round are
recorded (``section()``: the report's ``rounds_conditions``), so the comparison can warn when paired
rounds started at temperatures far apart (``core.compare``). The wait is a plain sleep in the calling
thread: Ctrl-C stops it at once, and ``close()`` (a ``with`` block) releases NVML; no thread is started.
"""

from __future__ import annotations

import time
from typing import Any

from ..core.environment import nvml_query

POLL_S = 0.25
CAP_S = 60.0
POWER_BAND = 0.10
POWER_BAND_W = 15.0
TEMPERATURE_BAND_C = 3.0

_sleep = time.sleep        # tests replace both with a fake clock
_now = time.monotonic

NO_SENSOR_NOTE = ("cooldown auto: no GPU power or temperature to read here (no NVML GPU), so it waited nothing "
                  "between {unit}s")


class _Probe:
    """Power (W, summed) and temperature (C, the hottest) of the CUDA-visible GPUs ``indices``, through NVML."""

    def __init__(self, indices: list[int]) -> None:
        from ..energy import nvml as nvml_mod

        self._mod, self.nvml, self.handles = nvml_mod, None, []
        try:
            self.nvml = nvml_mod.acquire()
        except Exception:  # noqa: BLE001 - no library, no driver: nothing to read
            return
        try:
            self.handles = [h for _, h, _ in nvml_mod.visible_handles(self.nvml, indices)]
        except Exception:  # noqa: BLE001
            self.close()

    def read(self) -> tuple[float | None, float | None]:
        if self.nvml is None:
            return None, None
        powers, temps = [], []
        for h in self.handles:
            powers.append(nvml_query(self.nvml, "nvmlDeviceGetPowerUsage", h))
            temps.append(nvml_query(self.nvml, "nvmlDeviceGetTemperature", h, getattr(self.nvml, "NVML_TEMPERATURE_GPU", 0)))
        power = sum(p for p in powers if p is not None) / 1000.0 if any(p is not None for p in powers) else None
        temp = max((t for t in temps if t is not None), default=None)
        return power, None if temp is None else float(temp)

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml = None
            self._mod.release()


class Cooldown:
    """Waits before each round (``unit`` "round") or cell ("cell") after the first, and records each start.

    ``setting``: None (no wait), seconds >= 0, or "auto". ``cuda_indices``: the GPUs to read (none: a CPU).
    Use it as a context manager (NVML is released on the way out, Ctrl-C included)."""

    def __init__(self, setting: float | str | None, cuda_indices: list[int], unit: str = "round") -> None:
        self.setting, self.unit = setting, unit
        self.records: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self._probe = _Probe(cuda_indices) if cuda_indices else None
        self.idle_power_w, self.idle_temperature_c = self._read()
        self.readable = self.idle_power_w is not None or self.idle_temperature_c is not None
        if setting == "auto" and not self.readable:
            self.notes.append(NO_SENSOR_NOTE.format(unit=unit))

    def _read(self) -> tuple[float | None, float | None]:
        return self._probe.read() if self._probe is not None else (None, None)

    def __enter__(self) -> "Cooldown":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()

    def settled(self, power: float | None, temperature: float | None) -> bool:
        """Power and temperature (where both it and the idle are known) back within the band of idle."""
        ok = True
        if power is not None and self.idle_power_w is not None:
            ok &= power - self.idle_power_w <= max(POWER_BAND * self.idle_power_w, POWER_BAND_W)
        if temperature is not None and self.idle_temperature_c is not None:
            ok &= temperature - self.idle_temperature_c <= TEMPERATURE_BAND_C
        return ok

    def _wait_idle(self) -> tuple[float, bool]:
        t0 = _now()
        while True:
            power, temperature = self._read()
            waited = _now() - t0
            if self.settled(power, temperature):
                return waited, False
            if waited >= CAP_S:
                return waited, True
            _sleep(min(POLL_S, CAP_S - waited))

    def before(self, **what: Any) -> None:
        """Wait (not before the first), then record the start of the round/cell ``what`` names (label=, cell=)."""
        waited, capped = 0.0, False
        if self.records and self.setting == "auto" and self.readable:
            waited, capped = self._wait_idle()
        elif self.records and isinstance(self.setting, float) and self.setting > 0:
            t0 = _now()
            _sleep(self.setting)
            waited = _now() - t0
        power, temperature = self._read()
        self.records.append({self.unit: len(self.records) + 1, **what, "waited_s": round(waited, 3),
                             "capped": capped, "temperature_c": temperature, "power_w": power})

    def section(self) -> dict[str, Any] | None:
        """The report's ``rounds_conditions`` (None: no cooldown asked and nothing read)."""
        if self.setting is None and not self.readable:
            return None
        out: dict[str, Any] = {"cooldown": self.setting, "unit": self.unit, "idle_power_w": self.idle_power_w,
                               "idle_temperature_c": self.idle_temperature_c, "rounds": list(self.records)}
        if self.setting == "auto":
            out["band"] = {"power_fraction": POWER_BAND, "power_w": POWER_BAND_W,
                           "temperature_c": TEMPERATURE_BAND_C, "poll_s": POLL_S, "cap_s": CAP_S}
        return out
