"""Test doubles for the energy sensors: a fake NVML module and fake sysfs trees (Jetson, RAPL).

The fake NVML integrates a step-wise power profile exactly, so tests know the true energy of any
interval. It behaves as an H200 was seen to (benchmarks/results/energy_accuracy.json): the counter
ticks every ``tick`` seconds, and the "instant" power is the average of the period that last ended.
"""

from __future__ import annotations

import bisect
import os
import threading
import time

import pytest


class FakeNVMLError(Exception):
    pass


class FakeField:
    def __init__(self, value: float | None, value_type: int = 1) -> None:
        self.nvmlReturn = 0 if value is not None else 3
        self.valueType = value_type  # 1: unsigned int (power, mW); 3: unsigned long long (energy, mJ)

        class _V:
            uiVal = int(round((value or 0) * 1000)) if value_type == 1 else 0
            ullVal = int(value or 0) if value_type == 3 else 0

        self.value = _V()


class FakeGpu:
    """A GPU whose power is a step function of perf_counter time."""

    def __init__(self, name: str = "Fake H100", uuid: str = "GPU-1111aaaa-0000", idle_w: float = 60.0,
                 tick: float = 0.1, counter: bool = True, period_average: bool = True) -> None:
        self.name, self.uuid, self.tick, self.counter = name, uuid, tick, counter
        self.period_average = period_average  # False: a truly instant power reading
        self.origin = time.perf_counter()
        self.steps_t = [self.origin - 100.0]
        self.steps_w = [idle_w]
        self.fail = False
        self.lock = threading.Lock()

    def set_power(self, watts: float, at: float | None = None) -> float:
        at = time.perf_counter() if at is None else at
        with self.lock:
            self.steps_t.append(at)
            self.steps_w.append(watts)
        return at

    def power(self, t: float) -> float:
        with self.lock:
            return self.steps_w[bisect.bisect_right(self.steps_t, t) - 1]

    def energy(self, a: float, b: float) -> float:
        """Exact joules over [a, b]."""
        with self.lock:
            ts, ws = list(self.steps_t), list(self.steps_w)
        total = 0.0
        for i, (t, w) in enumerate(zip(ts, ws)):
            end = ts[i + 1] if i + 1 < len(ts) else float("inf")
            lo, hi = max(a, t), min(b, end)
            if hi > lo:
                total += w * (hi - lo)
        return total

    def last_tick(self, t: float) -> float:
        return self.origin + ((t - self.origin) // self.tick) * self.tick

    def counter_mj(self) -> int:
        return int(self.energy(self.origin, self.last_tick(time.perf_counter())) * 1000)

    def reported_power(self, t: float) -> float:
        if not self.period_average:
            return self.power(t)
        end = self.last_tick(t)
        return self.energy(end - self.tick, end) / self.tick


class FakeNvml:
    """The part of pynvml that elana_magic.energy.nvml uses."""

    NVMLError = FakeNVMLError
    NVML_FI_DEV_POWER_INSTANT = 186

    def __init__(self, gpus: list[FakeGpu], energy_field: bool = False, api_cost_s: float = 0.0) -> None:
        self.gpus = gpus
        self.energy_field = energy_field  # field 83 readable (as on H100) - one call for counter + power
        self.api_cost_s = api_cost_s      # nvmlDeviceGetTotalEnergyConsumption's cost (~4 ms on H200)
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetUUID(self, h):
        return h.uuid

    def nvmlDeviceGetName(self, h):
        return h.name

    def _check(self, h):
        if h.fail:
            raise FakeNVMLError("GPU is lost")

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._check(h)
        if not h.counter:
            raise FakeNVMLError("Not Supported")
        if self.api_cost_s:
            time.sleep(self.api_cost_s)
        return h.counter_mj()

    def _nvmlGetFunctionPointer(self, name):
        """The C entry point, for the sampler's direct path (real pynvml structs, fake values)."""
        assert name == "nvmlDeviceGetFieldValues"

        def c_function(h, count, ref):
            values = ref._obj
            for i in range(count.value):
                field = values[i].fieldId
                if h.fail:
                    return 15  # NVML_ERROR_GPU_IS_LOST
                if field == 83:
                    values[i].valueType, values[i].value.ullVal = 3, h.counter_mj()
                else:
                    values[i].valueType, values[i].value.uiVal = 1, int(h.reported_power(time.perf_counter()) * 1000)
                values[i].nvmlReturn = 0
            return 0

        return c_function

    @property
    def c_nvmlFieldValue_t(self):
        import pynvml

        return pynvml.c_nvmlFieldValue_t

    def nvmlDeviceGetFieldValues(self, h, ids):
        self._check(h)
        out = []
        for field in ids:
            if field == 83:
                out.append(FakeField(h.counter_mj() if self.energy_field and h.counter else None, 3))
            else:
                out.append(FakeField(h.reported_power(time.perf_counter())))
        return out

    def nvmlDeviceGetPowerUsage(self, h):
        self._check(h)
        return int(h.reported_power(time.perf_counter()) * 1000)


@pytest.fixture
def fake_nvml(monkeypatch):
    """Install a fake NVML with two GPUs; no Jetson rails and no RAPL on this 'machine'."""
    from elana_magic.energy import jetson, nvml, rapl

    fake = FakeNvml([FakeGpu(), FakeGpu(name="Fake H100 #2", uuid="GPU-2222bbbb-0000", idle_w=70.0)])
    monkeypatch.setattr(nvml, "_module", fake)
    monkeypatch.setattr(jetson, "SYSFS_ROOT", "/nonexistent-sys")
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", "/nonexistent-powercap")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield fake
    from elana_magic.magics.energy import close_meters

    close_meters()
    assert nvml._refs == 0, "NVML left initialised"


def write(path, text) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(str(text))


def write_atomic(path, text) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(text))
    os.replace(tmp, path)  # sysfs reads are atomic; so must the fake's be


def make_orin_nano(root) -> str:
    hw = os.path.join(root, "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3")
    for ch, (label, mv, ma) in enumerate([("VDD_IN", 5000, 2000), ("VDD_CPU_GPU_CV", 5000, 800),
                                          ("VDD_SOC", 5000, 400)], start=1):
        write(f"{hw}/in{ch}_label", label)
        write(f"{hw}/in{ch}_input", mv)
        write(f"{hw}/curr{ch}_input", ma)
    write(f"{hw}/in7_label", "Sum of shunt voltages")
    write(f"{hw}/in7_input", 0)
    write(f"{hw}/update_interval", 140)
    return hw


def make_rapl(root, package_uj=1_000_000, dram_uj=500_000, max_uj=262_143_328_850) -> str:
    pkg = os.path.join(root, "intel-rapl:0")
    write(f"{pkg}/name", "package-0")
    write(f"{pkg}/energy_uj", package_uj)
    write(f"{pkg}/max_energy_range_uj", max_uj)
    write(f"{pkg}/intel-rapl:0:0/name", "core")
    write(f"{pkg}/intel-rapl:0:0/energy_uj", 1)
    write(f"{pkg}/intel-rapl:0:1/name", "dram")
    write(f"{pkg}/intel-rapl:0:1/energy_uj", dram_uj)
    write(f"{pkg}/intel-rapl:0:1/max_energy_range_uj", max_uj)
    return pkg


@pytest.fixture
def sysfs():
    """The fake-sysfs writers and NVML fakes, for tests that build their own sensor trees."""
    import types

    return types.SimpleNamespace(write=write, write_atomic=write_atomic, make_orin_nano=make_orin_nano,
                                 make_rapl=make_rapl, FakeGpu=FakeGpu, FakeNvml=FakeNvml)
