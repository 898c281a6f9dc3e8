"""Jetson INA3221 and RAPL powercap readers against fake sysfs trees (counter wrap included)."""

from __future__ import annotations

import os
import time

import pytest

from elana_magic.energy import EnergyMeter, jetson, nvml, rapl


def test_jetson_rails_are_labelled_honestly(sysfs, tmp_path):
    sysfs.make_orin_nano(tmp_path)
    rails, why = jetson.discover(str(tmp_path))
    assert why is None
    names = [r.name for r in rails]
    assert names == ["VDD_IN - module input (total)", "VDD_CPU_GPU_CV - CPU+GPU+CV (shared rail)", "VDD_SOC - SoC"]
    assert [r.counted_in_total for r in rails] == [True, False, False]
    assert rails[0].read().power_w == pytest.approx(10.0)
    assert "140 ms" in rails[0].note


def test_jetson_window_integrates_the_module_input(sysfs, tmp_path, no_nvml, monkeypatch):
    hw = sysfs.make_orin_nano(tmp_path)
    monkeypatch.setattr(jetson, "SYSFS_ROOT", str(tmp_path))
    with EnergyMeter() as meter:
        assert meter.available
        with meter.window() as win:
            sysfs.write_atomic(f"{hw}/curr1_input", 4000)  # 20 W
            time.sleep(0.3)
    rep = win.report
    assert rep.energy_j == pytest.approx(20.0 * rep.duration_s, rel=0.1)
    assert abs(rep.energy_j - 20.0 * rep.duration_s) <= rep.uncertainty_j
    assert rep.idle_power_w == pytest.approx(10.0)
    assert "INA3221" in rep.method
    assert len(rep.devices) == 3 and rep.devices[1]["energy_j"] == pytest.approx(4.0 * rep.duration_s, rel=0.1)
    assert "not summed into the total" in rep.to_text()


def test_old_jetson_iio_layout(sysfs, tmp_path):
    dev = os.path.join(tmp_path, "bus/i2c/drivers/ina3221x/6-0040/iio:device0")
    for n, (name, mw) in enumerate([("POM_5V_IN", 4000), ("POM_5V_GPU", 1200), ("POM_5V_CPU", 900)]):
        sysfs.write(f"{dev}/rail_name_{n}", name)
        sysfs.write(f"{dev}/in_power{n}_input", mw)
    rails, why = jetson.discover(str(tmp_path))
    assert [r.name for r in rails] == ["POM_5V_IN - module input (total)", "POM_5V_GPU - GPU", "POM_5V_CPU - CPU"]
    assert rails[1].read().power_w == pytest.approx(1.2)


def test_rails_without_input_rail_are_summed(sysfs, tmp_path):
    hw = os.path.join(tmp_path, "bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon1")
    for ch, label in enumerate(["VDD_GPU_SOC", "VDD_CPU_CV"], start=1):
        sysfs.write(f"{hw}/in{ch}_label", label)
        sysfs.write(f"{hw}/in{ch}_input", 1000)
        sysfs.write(f"{hw}/curr{ch}_input", 1000)
    rails, _ = jetson.discover(str(tmp_path))
    assert all(r.counted_in_total for r in rails)
    assert "sum of rails" in rails[0].note and rails[0].name == "VDD_GPU_SOC - GPU+SoC (shared rail)"


def test_rapl_zones_found_and_core_skipped(sysfs, tmp_path):
    sysfs.make_rapl(tmp_path)
    zones, why = rapl.discover(str(tmp_path))
    assert why is None
    assert [(z.name, z.kind) for z in zones] == [("CPU package-0 (RAPL)", "cpu-package"),
                                                ("CPU package-0 dram (RAPL)", "dram")]
    assert zones[0].read().energy_j == pytest.approx(1.0)


def test_rapl_counter_wrap(sysfs, tmp_path, no_nvml, monkeypatch):
    max_uj = 10_000_000
    pkg = sysfs.make_rapl(tmp_path, package_uj=max_uj - 1_000_000, dram_uj=0, max_uj=max_uj)
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", str(tmp_path))
    with EnergyMeter(measure_idle=False) as meter:
        assert meter.available and all(s.counted_in_total for s in meter.sensors)
        with meter.window() as win:
            time.sleep(0.05)
            sysfs.write_atomic(f"{pkg}/energy_uj", 2_000_000)  # wrapped: 1 J to the top + 2 J
            sysfs.write_atomic(f"{pkg}/intel-rapl:0:1/energy_uj", 500_000)
            time.sleep(0.05)
    rep = win.report
    assert rep.devices[0]["energy_j"] == pytest.approx(3.0, abs=0.01)
    assert rep.energy_j == pytest.approx(3.5, abs=0.02)
    assert rep.cpu_energy_j == pytest.approx(rep.energy_j)


def test_rapl_unreadable_gives_the_reason(sysfs, tmp_path, monkeypatch):
    sysfs.make_rapl(tmp_path)

    real_open = open

    def deny(path, *a, **k):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    zones, why = rapl.discover(str(tmp_path))
    assert zones == [] and "root" in why and "chmod" in why


def test_rapl_is_reported_apart_from_gpu_energy(sysfs, tmp_path, monkeypatch):
    FakeGpu, FakeNvml = sysfs.FakeGpu, sysfs.FakeNvml

    sysfs.make_rapl(tmp_path)
    monkeypatch.setattr(nvml, "_module", FakeNvml([FakeGpu()]))
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with EnergyMeter(measure_idle=False) as meter:
        with meter.window() as win:
            time.sleep(0.25)
    rep = win.report
    gpu = [d for d in rep.devices if d["kind"] == "gpu"]
    cpu = [d for d in rep.devices if d["kind"] != "gpu"]
    assert [d["counted_in_total"] for d in cpu] == [False, False]
    assert rep.energy_j == pytest.approx(gpu[0]["energy_j"])
    assert rep.cpu_energy_j == pytest.approx(0.0)
    assert nvml._refs == 0
