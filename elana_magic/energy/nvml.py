"""NVIDIA GPUs through nvidia-ml-py: the energy counter, instant power, CUDA_VISIBLE_DEVICES mapping.

NVML is initialised once per process and reference counted (``acquire``/``release``), so many
meters and windows share one ``nvmlInit``. NVML numbers GPUs in PCI order and ignores
``CUDA_VISIBLE_DEVICES``; ``visible_handles`` maps the CUDA-visible indices back to NVML handles.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from .sensor import Reading, Sensor

# Tests replace this with a fake NVML module (see tests/test_energy_nvml.py).
_module: Any = None
_lock = threading.Lock()
_refs = 0

COUNTER_TICK_S = 0.1  # the energy counter's update period seen on H100/H200 (re-measured per window)


def load_pynvml():
    """The ``pynvml`` module of nvidia-ml-py (or the test double installed in ``_module``)."""
    if _module is not None:
        return _module
    import pynvml

    return pynvml


def acquire():
    """nvmlInit on first use; every acquire needs one ``release``."""
    global _refs
    nvml = load_pynvml()
    with _lock:
        if _refs == 0:
            nvml.nvmlInit()
        _refs += 1
    return nvml


def release() -> None:
    global _refs
    with _lock:
        if _refs == 0:
            return
        _refs -= 1
        if _refs == 0:
            try:
                load_pynvml().nvmlShutdown()
            except Exception:  # noqa: BLE001 - the library may already be gone at exit
                pass


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_handles(nvml, devices: list[int] | None = None) -> list[tuple[int, Any, str]]:
    """[(cuda_index, nvml_handle, note)] for the CUDA-visible GPUs (all, or the indices in ``devices``).

    ``CUDA_VISIBLE_DEVICES`` may list indices, ``GPU-<uuid>`` (or a unique prefix) or ``MIG-<uuid>``;
    as CUDA does, parsing stops at the first entry that names no device. A MIG instance maps to its
    parent GPU, whose counter covers the whole board (the note says so).
    """
    count = nvml.nvmlDeviceGetCount()
    all_handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible: list[tuple[Any, str]] = []
    if env is None:
        visible = [(h, "") for h in all_handles]
    else:
        for entry in (e.strip() for e in env.split(",")):
            found = _match_entry(nvml, entry, all_handles)
            if found is None:
                break
            visible.append(found)
    if devices is None:
        return [(i, h, note) for i, (h, note) in enumerate(visible)]
    out = []
    for index in devices:
        if not 0 <= index < len(visible):
            raise ValueError(
                f"CUDA device {index} is not visible ({len(visible)} visible GPU(s); "
                f"CUDA_VISIBLE_DEVICES={env!r})"
            )
        out.append((index, *visible[index]))
    return out


def _match_entry(nvml, entry: str, handles: list[Any]) -> tuple[Any, str] | None:
    if not entry:
        return None
    if entry.lstrip("-").isdigit():
        index = int(entry)
        return (handles[index], "") if 0 <= index < len(handles) else None
    if entry.startswith("MIG-"):
        return _match_mig(nvml, entry, handles)
    prefix = entry if entry.startswith("GPU-") else f"GPU-{entry}"
    matches = [h for h in handles if _text(nvml.nvmlDeviceGetUUID(h)).startswith(prefix)]
    return (matches[0], "") if len(matches) == 1 else None


def _match_mig(nvml, entry: str, handles: list[Any]) -> tuple[Any, str] | None:
    for parent in handles:
        try:
            count = nvml.nvmlDeviceGetMaxMigDeviceCount(parent)
        except Exception:  # noqa: BLE001 - not a MIG-capable GPU
            continue
        for i in range(count):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, i)
                uuid = _text(nvml.nvmlDeviceGetUUID(mig))
            except Exception:  # noqa: BLE001 - empty MIG slot
                continue
            if uuid.startswith(entry):
                return parent, f"MIG instance {entry[:12]}...: energy is the whole GPU's (shared with other instances)"
    return None


def _field_value(value) -> float:
    """The number in an nvmlFieldValue_t, whatever its type."""
    kinds = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    return float(getattr(value.value, kinds.get(value.valueType, "uiVal")))


class NvmlGpu(Sensor):
    """One CUDA-visible GPU: energy counter (Volta+, probed) and instant power (field 186)."""

    kind = "gpu"
    counted_in_total = True

    def __init__(self, nvml, cuda_index: int, handle, note: str = "") -> None:
        self._nvml = nvml
        self._handle = handle
        self.cuda_index = cuda_index
        self.name = f"GPU {cuda_index} ({_text(nvml.nvmlDeviceGetName(handle))})"
        self.note = note
        self.has_counter = self._probe_counter()
        self.counter_tick_s = COUNTER_TICK_S if self.has_counter else None
        self._instant_field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", 186)
        self._energy_field = getattr(nvml, "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 83)
        self._has_instant = self._probe_instant()
        self.read_path = "nvmlDeviceGetTotalEnergyConsumption + field POWER_INSTANT"
        self._combined = self.has_counter and self._has_instant and self._probe_combined()
        self._direct = None
        if self._combined:
            self.read_path = "one nvmlDeviceGetFieldValues call (TOTAL_ENERGY_CONSUMPTION + POWER_INSTANT)"
            self._direct = self._direct_field_reader()
        if self.has_counter:
            self.method = "NVML energy counter, tick-to-tick periods (edge periods split against the power outside)"
        else:
            self.method = "integrated NVML instant power (this GPU has no energy counter)"

    def _probe_counter(self) -> bool:
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return True
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported on pre-Volta, vGPU, ...
            return False

    def _probe_instant(self) -> bool:
        try:
            value = self._nvml.nvmlDeviceGetFieldValues(self._handle, [self._instant_field])[0]
            return value.nvmlReturn == 0
        except Exception:  # noqa: BLE001 - old driver: fall back to nvmlDeviceGetPowerUsage
            return False

    def _probe_combined(self) -> bool:
        """Use one field-values call for counter + power if it reads the same counter, and is cheaper."""
        nvml, h = self._nvml, self._handle
        try:
            costs_api, costs_fields = [], []
            for _ in range(3):
                t = time.perf_counter()
                before = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                costs_api.append(time.perf_counter() - t)
                t = time.perf_counter()
                values = nvml.nvmlDeviceGetFieldValues(h, [self._energy_field, self._instant_field])
                costs_fields.append(time.perf_counter() - t)
                after = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                if any(v.nvmlReturn != 0 for v in values) or not before <= _field_value(values[0]) <= after:
                    return False
        except Exception:  # noqa: BLE001 - field not supported: keep the two calls
            return False
        return min(costs_fields) < min(costs_api)

    def _direct_field_reader(self):
        """The C function and a reused buffer: the sampler thread then holds the GIL for microseconds."""
        get_fn = getattr(self._nvml, "_nvmlGetFunctionPointer", None)
        struct = getattr(self._nvml, "c_nvmlFieldValue_t", None)
        if get_fn is None or struct is None:
            return None  # not the real pynvml (a test double): use the public wrapper
        import ctypes

        values = (struct * 2)()
        values[0].fieldId, values[1].fieldId = self._energy_field, self._instant_field
        return get_fn("nvmlDeviceGetFieldValues"), values, ctypes.c_int32(2), ctypes.byref(values), threading.Lock()

    def _read_direct(self) -> tuple[float, float]:
        fn, values, count, ref, lock = self._direct
        with lock:  # nested windows may read one GPU from two sampler threads
            ret = fn(self._handle, count, ref)
            energy, power = values[0], values[1]
            if ret != 0 or energy.nvmlReturn != 0 or power.nvmlReturn != 0:
                raise RuntimeError(f"nvmlDeviceGetFieldValues failed (returns {ret}, {energy.nvmlReturn}, "
                                   f"{power.nvmlReturn})")
            return _field_value(energy) / 1000.0, _field_value(power) / 1000.0

    def power_w(self) -> float:
        if self._has_instant:
            value = self._nvml.nvmlDeviceGetFieldValues(self._handle, [self._instant_field])[0]
            if value.nvmlReturn == 0:
                return _field_value(value) / 1000.0
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0

    def read(self) -> Reading:
        t_before = time.perf_counter()
        if self._direct is not None:
            energy, power = self._read_direct()
            return Reading((t_before + time.perf_counter()) / 2, energy, power)
        if self._combined:
            energy_mj, power_mw = self._nvml.nvmlDeviceGetFieldValues(
                self._handle, [self._energy_field, self._instant_field])
            if energy_mj.nvmlReturn != 0 or power_mw.nvmlReturn != 0:
                raise RuntimeError(f"NVML field read failed (return codes {energy_mj.nvmlReturn}, {power_mw.nvmlReturn})")
            return Reading((t_before + time.perf_counter()) / 2, _field_value(energy_mj) / 1000.0,
                           _field_value(power_mw) / 1000.0)
        energy = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0 if self.has_counter else None
        power = self.power_w()
        return Reading((t_before + time.perf_counter()) / 2, energy, power)


def discover(devices: list[int] | None) -> tuple[list[NvmlGpu], str | None, Any]:
    """The measured GPUs, or ([], why-not, None). The returned module must be ``release``d when non-None."""
    try:
        nvml = acquire()
    except ImportError:
        return [], "nvidia-ml-py is not installed", None
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return [], f"NVML: {_text(exc) or type(exc).__name__}", None
    try:
        found = visible_handles(nvml, devices)
        sensors = [NvmlGpu(nvml, index, handle, note) for index, handle, note in found]
    except ValueError:
        release()
        raise
    except Exception as exc:  # noqa: BLE001
        release()
        return [], f"NVML failed: {_text(exc) or type(exc).__name__}", None
    if not sensors:
        release()
        return [], "no CUDA-visible NVIDIA GPU", None
    return sensors, None, nvml
