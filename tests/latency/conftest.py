"""Latency fixtures: every meter a measurement opens reads the 50 W double (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fake_energy(monkeypatch, constant_power):
    """Every meter the latency measurement opens reads the 50 W double; windows of 0.05 s."""
    from elana_magic.core import defaults
    from elana_magic.energy import EnergyMeter
    from elana_magic.latency import measure

    def open_meter(energy, device, notes):
        if energy is False:
            return None, "energy off (--no-energy)"
        return EnergyMeter(sensors=[constant_power()], measure_idle=False), None

    monkeypatch.setattr(measure, "_open_meter", open_meter)
    monkeypatch.setattr(defaults, "ENERGY_WINDOW_S", 0.05)
