"""Latency fixtures: an energy sensor double for whole grids."""

from __future__ import annotations

import time

import pytest

from elana_magic.energy.sensor import Reading, Sensor


class ConstantPowerDouble(Sensor):
    """A unit-test double of a board counter: 50 W, a cumulative joule counter and instant power."""

    name, kind, method, has_counter = "fake-gpu", "gpu", "test double: 50 W", True

    def __init__(self):
        self.t0 = time.perf_counter()

    def read(self) -> Reading:
        t = time.perf_counter()
        return Reading(t, 50.0 * (t - self.t0), 50.0)


@pytest.fixture
def fake_energy(monkeypatch):
    """Every meter the latency measurement opens reads the 50 W double; windows of 0.05 s."""
    from elana_magic.energy import EnergyMeter
    from elana_magic.latency import measure

    def open_meter(energy, device, notes):
        if energy is False:
            return None, "energy off (--no-energy)"
        return EnergyMeter(sensors=[ConstantPowerDouble()], measure_idle=False), None

    monkeypatch.setattr(measure, "_open_meter", open_meter)
    monkeypatch.setattr(measure, "DEFAULT_ENERGY_WINDOW_S", 0.05)
