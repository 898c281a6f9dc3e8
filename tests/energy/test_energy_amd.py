"""AMD GPUs through amdsmi, against a fake ``amdsmi`` module put in sys.modules (no AMD card was used).

The fake follows amdsmi's Python interface (ROCm 6.x): ``amdsmi_get_energy_count`` gives a tick count
(``energy_accumulator``, ``power`` before ROCm 6.4) and ``counter_resolution`` in µJ per tick;
``amdsmi_get_power_info`` gives socket power in W, "N/A" where the board has none.
"""

from __future__ import annotations

import sys
import time
import types

import pytest

from elana_magic.energy import EnergyMeter, amd, jetson, nvml, rapl

RESOLUTION_UJ = 15.259  # µJ per tick, as MI200/MI300 report


class AmdSmiLibraryException(Exception):
    def __init__(self, code: int, text: str = "") -> None:
        super().__init__(f"Error code:\n\t{code} | {text}")
        self.code = code

    def get_error_code(self) -> int:
        return self.code


class FakeAmdGpu:
    """An AMD GPU whose power is a step function of perf_counter time, integrated exactly."""

    def __init__(self, name: str = "AMD Instinct MI300X", uuid: str = "1fff74a1-0000-1000-80aa-000000000001",
                 idle_w: float = 100.0, counter: bool = True, start_ticks: int = 10 ** 12, width_bits: int = 64,
                 power_keys=("current_socket_power",), old_api: bool = False, kind: str = "AMD_GPU") -> None:
        self.name, self.uuid, self.counter, self.kind = name, uuid, counter, kind
        self.start_ticks, self.width_bits, self.power_keys, self.old_api = start_ticks, width_bits, power_keys, old_api
        self.origin = time.perf_counter()
        self.steps = [(self.origin - 100.0, idle_w)]
        self.fail = False

    def set_power(self, watts: float) -> float:
        at = time.perf_counter()
        self.steps.append((at, watts))
        return at

    def power(self, t: float) -> float:
        return [w for s, w in self.steps if s <= t][-1]

    def energy(self, a: float, b: float) -> float:
        total = 0.0
        for i, (start, watts) in enumerate(self.steps):
            end = self.steps[i + 1][0] if i + 1 < len(self.steps) else float("inf")
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += watts * (hi - lo)
        return total

    def ticks(self) -> int:
        ticks = self.start_ticks + int(self.energy(self.origin, time.perf_counter()) * 1e6 / RESOLUTION_UJ)
        return ticks % (2 ** self.width_bits)


class FakeAmdSmi(types.ModuleType):
    """The part of amdsmi that elana_magic.energy.amd uses."""

    AmdSmiLibraryException = AmdSmiLibraryException

    class AmdSmiInitFlags:
        INIT_AMD_GPUS = 2

    def __init__(self, gpus: list[FakeAmdGpu], init_error: Exception | None = None) -> None:
        super().__init__("amdsmi")
        self.gpus, self.init_error = gpus, init_error
        self.inits, self.shutdowns, self.init_flags = 0, 0, []

    def amdsmi_init(self, flags=None):
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1
        self.init_flags.append(flags)

    def amdsmi_shut_down(self):
        self.shutdowns += 1

    def amdsmi_get_processor_handles(self):
        return list(self.gpus)

    def amdsmi_get_processor_type(self, h):
        return {"processor_type": h.kind}

    def amdsmi_get_gpu_asic_info(self, h):
        return {"market_name": h.name, "vendor_id": "0x1002"}

    def amdsmi_get_gpu_device_uuid(self, h):
        return h.uuid

    def _check(self, h):
        if h.fail:
            raise AmdSmiLibraryException(34, "AMDSMI_STATUS_DRIVER_NOT_LOADED")

    def amdsmi_get_energy_count(self, h):
        self._check(h)
        if not h.counter:
            raise AmdSmiLibraryException(2, "AMDSMI_STATUS_NOT_SUPPORTED")
        key = "power" if h.old_api else "energy_accumulator"
        return {key: h.ticks(), "counter_resolution": RESOLUTION_UJ, "timestamp": time.time_ns()}

    def amdsmi_get_power_info(self, h):
        self._check(h)
        watts = int(round(h.power(time.perf_counter())))
        info = {k: "N/A" for k in amd.POWER_KEYS}
        info.update({k: watts for k in h.power_keys}, gfx_voltage=800, power_limit=750)
        return info


@pytest.fixture
def amd_machine(monkeypatch):
    """A machine with no NVIDIA GPU, no Jetson rails, no RAPL; ``install(gpus)`` puts a fake amdsmi in."""
    class NoNvml:
        def nvmlInit(self):
            raise OSError("NVML Shared Library Not Found")

    monkeypatch.setattr(nvml, "_module", NoNvml())
    monkeypatch.setattr(jetson, "SYSFS_ROOT", "/nonexistent-sys")
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", "/nonexistent-powercap")
    for var in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)

    def install(gpus: list[FakeAmdGpu], **kwargs) -> FakeAmdSmi:
        fake = FakeAmdSmi(gpus, **kwargs)
        monkeypatch.setitem(sys.modules, "amdsmi", fake)
        return fake

    yield install
    assert amd._refs == 0, "amdsmi left initialised"


def test_amd_gpus_selected_when_present_and_released(amd_machine):
    fake = amd_machine([FakeAmdGpu(), FakeAmdGpu(name="Instinct MI300X", uuid="1fff74a1-0000-1000-80aa-000000000002")])
    meter = EnergyMeter(measure_idle=False)
    assert meter.available and meter.reason is None
    assert [s.name for s in meter.sensors] == ["GPU 0 (AMD Instinct MI300X)", "GPU 1 (AMD Instinct MI300X)"]
    assert all(isinstance(s, amd.AmdGpu) and s.has_counter for s in meter.sensors)
    assert meter.cuda_indices == [0, 1]  # torch on ROCm synchronizes them as cuda:0, cuda:1
    assert "AMD (amdsmi) energy counter" in meter.sensors[0].method and meter.sensors[0].source == "AMD (amdsmi)"
    assert fake.inits == 1 and fake.init_flags == [2]
    meter2 = EnergyMeter(measure_idle=False)  # a second meter shares the one amdsmi_init
    assert fake.inits == 1
    meter.close()
    assert fake.shutdowns == 0
    meter2.close()
    meter2.close()
    assert fake.shutdowns == 1


def test_counter_differenced_with_its_resolution(amd_machine):
    gpu = FakeAmdGpu(idle_w=100.0)
    amd_machine([gpu])
    with EnergyMeter(measure_idle=False) as meter:
        sensor = meter.sensors[0]
        reading = sensor.read()
        assert reading.energy_j == pytest.approx(gpu.ticks() * RESOLUTION_UJ / 1e6, abs=0.5)
        assert reading.power_w == 100.0
        with meter.window() as win:
            gpu.set_power(400.0)
            time.sleep(0.3)
    rep = win.report
    truth = gpu.energy(rep.t_start, rep.t_end)
    assert rep.energy_j == pytest.approx(truth, rel=0.03)
    assert abs(rep.energy_j - truth) <= rep.uncertainty_j + 0.05 * truth
    device = rep.devices[0]
    assert device["counter_delta_j"] == pytest.approx(truth, rel=0.1)
    assert "AMD (amdsmi) energy counter" in rep.method
    assert device["peak_power_w"] == 400.0
    assert "AMD (amdsmi)" in rep.to_text()


def test_old_api_key_power_is_read_as_the_counter(amd_machine):
    gpu = FakeAmdGpu(old_api=True)
    amd_machine([gpu])
    sensors, why, smi = amd.discover(None)
    try:
        assert why is None and sensors[0].has_counter
        assert sensors[0].read().energy_j == pytest.approx(gpu.ticks() * RESOLUTION_UJ / 1e6, abs=0.5)
    finally:
        amd.release()


def test_narrow_counter_wraps_around(amd_machine):
    wrap_j = 2 ** 32 * RESOLUTION_UJ / 1e6  # ~65.5 kJ
    # 30 J below the top: at 400 W the counter wraps ~75 ms into the window
    gpu = FakeAmdGpu(width_bits=32, start_ticks=2 ** 32 - int(30 * 1e6 / RESOLUTION_UJ), idle_w=0.0)
    amd_machine([gpu])
    with EnergyMeter(measure_idle=False) as meter:
        sensor = meter.sensors[0]
        assert sensor.counter_wrap_j == pytest.approx(wrap_j)
        with meter.window() as win:
            gpu.set_power(400.0)
            time.sleep(0.25)
            assert gpu.ticks() < 2 ** 31  # it did wrap
    rep = win.report
    truth = gpu.energy(rep.t_start, rep.t_end)
    assert truth > 30
    assert rep.energy_j == pytest.approx(truth, rel=0.05)


def test_wide_counter_is_not_taken_to_wrap(amd_machine):
    amd_machine([FakeAmdGpu(start_ticks=2 ** 40)])
    sensors, _, _ = amd.discover(None)
    try:
        assert sensors[0].counter_wrap_j is None
    finally:
        amd.release()


def test_power_only_fallback(amd_machine):
    gpu = FakeAmdGpu(counter=False, power_keys=("average_socket_power",), idle_w=90.0)
    amd_machine([gpu])
    with EnergyMeter(measure_idle=False) as meter:
        sensor = meter.sensors[0]
        assert not sensor.has_counter
        assert sensor.method.startswith("integrated AMD (amdsmi) socket power (average_socket_power")
        assert "NOT_SUPPORTED" in sensor.method and "running average" in sensor.note
        with meter.window() as win:
            gpu.set_power(300.0)
            time.sleep(0.3)
    rep = win.report
    truth = gpu.energy(rep.t_start, rep.t_end)
    assert rep.energy_j == pytest.approx(truth, rel=0.1)
    assert rep.devices[0]["counter_delta_j"] is None


def test_neither_counter_nor_power_is_not_selected(amd_machine):
    fake = amd_machine([FakeAmdGpu(counter=False, power_keys=())])
    meter = EnergyMeter()
    assert not meter.available and "no AMD GPU (amdsmi failed: " in meter.reason
    assert fake.inits == 1 and fake.shutdowns == 1  # released at once: nothing left behind
    meter.close()


def test_init_failure_is_not_selected_and_says_why(amd_machine, sysfs, tmp_path, monkeypatch):
    amd_machine([FakeAmdGpu()], init_error=AmdSmiLibraryException(34, "AMDSMI_STATUS_DRIVER_NOT_LOADED"))
    with EnergyMeter() as meter:
        assert not meter.available and meter.sensors == []
        assert "no AMD GPU (amdsmi_init failed: " in meter.reason and "DRIVER_NOT_LOADED" in meter.reason
        assert "no NVIDIA GPU" in meter.reason
    with pytest.raises(ValueError, match="amdsmi_init failed"):
        EnergyMeter(devices=[0])
    # with RAPL measured instead, the failure is noted beside it
    sysfs.make_rapl(tmp_path)
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", str(tmp_path))
    with EnergyMeter(measure_idle=False) as meter:
        assert meter.available
        counted = [s for s in meter.sensors if s.counted_in_total]
        assert counted and all("AMD GPU not measured (amdsmi_init failed" in s.note for s in counted)


def test_amdsmi_not_installed_or_broken(amd_machine, monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    with EnergyMeter() as meter:
        assert not meter.available and "no AMD GPU (amdsmi is not installed)" in meter.reason

    class Broken(types.ModuleType):  # libamd_smi.so missing: amdsmi raises on first use
        def amdsmi_init(self, flags=None):
            raise OSError("libamd_smi.so: cannot open shared object file")

    monkeypatch.setitem(sys.modules, "amdsmi", Broken("amdsmi"))
    with EnergyMeter() as meter:
        assert "amdsmi_init failed: libamd_smi.so" in meter.reason


def test_failure_mid_run_keeps_what_was_read(amd_machine):
    gpu = FakeAmdGpu(idle_w=200.0)
    fake = amd_machine([gpu])
    with EnergyMeter(measure_idle=False) as meter:
        with meter.window() as win:
            time.sleep(0.15)
            gpu.fail = True
            time.sleep(0.1)
    rep = win.report
    assert rep.errors and "GPU 0 (AMD Instinct MI300X)" in rep.errors[0] and "DRIVER_NOT_LOADED" in rep.errors[0]
    assert rep.devices[0]["failed"]
    assert rep.energy_j == pytest.approx(200.0 * 0.15, rel=0.35)  # up to the last reading
    assert fake.shutdowns == 1


def test_nvidia_first_amdsmi_untouched(fake_nvml, monkeypatch):
    fake = FakeAmdSmi([FakeAmdGpu()])
    monkeypatch.setitem(sys.modules, "amdsmi", fake)
    with EnergyMeter(measure_idle=False) as meter:
        assert all(isinstance(s, nvml.NvmlGpu) for s in meter.sensors)
    assert fake.inits == 0


def _visible(monkeypatch, **env) -> list[str]:
    for var in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    smi = sys.modules["amdsmi"]
    return [(i, h.uuid[-1]) for i, h in amd.visible_handles(smi)]


def test_visible_devices_map_to_amdsmi_handles(amd_machine, monkeypatch):
    gpus = [FakeAmdGpu(uuid=f"1fff74a1-0000-1000-80aa-00000000000{n}") for n in range(4)]
    cpu = FakeAmdGpu(name="AMD EPYC", uuid="cpu", kind="AMD_CPU")
    amd_machine([gpus[0], cpu, *gpus[1:]])
    assert _visible(monkeypatch) == [(0, "0"), (1, "1"), (2, "2"), (3, "3")]  # the CPU handle left out
    assert _visible(monkeypatch, HIP_VISIBLE_DEVICES="2,0") == [(0, "2"), (1, "0")]
    assert _visible(monkeypatch, CUDA_VISIBLE_DEVICES="3") == [(0, "3")]
    assert _visible(monkeypatch, HIP_VISIBLE_DEVICES="1", CUDA_VISIBLE_DEVICES="3") == [(0, "1")]  # HIP's wins
    # ROCR_VISIBLE_DEVICES picks first, then HIP_VISIBLE_DEVICES indexes into what it left
    assert _visible(monkeypatch, ROCR_VISIBLE_DEVICES="1,3", HIP_VISIBLE_DEVICES="1") == [(0, "3")]
    assert _visible(monkeypatch, HIP_VISIBLE_DEVICES="GPU-1fff74a1-0000-1000-80aa-000000000002") == [(0, "2")]
    assert _visible(monkeypatch, HIP_VISIBLE_DEVICES="1,9,2") == [(0, "1")]  # stops at the first unknown
    assert _visible(monkeypatch, HIP_VISIBLE_DEVICES="") == []
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "2,0")
    with EnergyMeter(devices=[1], measure_idle=False) as meter:
        assert [s.cuda_index for s in meter.sensors] == [1] and meter.cuda_indices == [1]
        assert meter.sensors[0]._handle is gpus[0]
    with pytest.raises(ValueError, match="GPU 2 is not visible .*HIP_VISIBLE_DEVICES='2,0'"):
        EnergyMeter(devices=[2])
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "")
    with EnergyMeter() as meter:
        assert not meter.available and "no HIP-visible AMD GPU" in meter.reason


def test_help_names_the_amd_sensor():
    """The magics' and the command's help come from the one option spec: --energy names every sensor kind."""
    from elana_magic.cli import build_parser
    from elana_magic.magics.latency import LatencyMagics

    assert "amdsmi" in " ".join(build_parser().format_help().split())
    assert "amdsmi" in " ".join(LatencyMagics.elana_latency.__doc__.split())
