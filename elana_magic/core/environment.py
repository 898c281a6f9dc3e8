"""Where a measurement ran: host, device, driver and library versions, and the GPU's state.

With NVML (``elana_magic.energy.nvml``, so tests can install the fake): the power limit, SM clock
and temperature of the measured GPU at the start and at the end, and the other processes on it.
The host's conditions (``core.conditions``): load over the run, cores, torch's CPU threads and how they
were chosen (``core.threads``). Nothing here fails a measurement: a field that can't be read is left out.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from .conditions import finish_conditions, start_conditions
from .threads import current_choice


def _versions() -> dict[str, Any]:
    from .._version import __version__

    out: dict[str, Any] = {"elana_magic": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers"):  # from the installed metadata: no import of transformers here
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - both are dependencies
            out[name] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.__version__  # the one running (a source build may differ from metadata)
        out["cuda"] = torch.version.cuda
    return out


def _device_name(device) -> str | None:
    if device is None:
        return None
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001 - a name is a nicety
            return str(device)
    return platform.processor() or platform.machine() or device.type


def nvml_query(nvml, name: str, *args) -> Any:
    """``nvml.<name>(*args)``, or None where the library lacks it or the GPU doesn't support it."""
    fn = getattr(nvml, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - an unsupported query leaves the field out
        return None


def gpu_state(cuda_index: int = 0) -> dict[str, Any] | None:
    """Power limit (W), SM clock (MHz), temperature (C) and other processes of a CUDA-visible GPU, or None."""
    from ..energy import nvml as nvml_mod

    try:
        nvml = nvml_mod.acquire()
    except Exception:  # noqa: BLE001 - no NVML: no GPU state
        return None
    try:
        handles = nvml_mod.visible_handles(nvml, [cuda_index])
        handle = handles[0][1]
        state: dict[str, Any] = {"driver": _text(nvml_query(nvml, "nvmlSystemGetDriverVersion"))}
        limit = nvml_query(nvml, "nvmlDeviceGetPowerManagementLimit", handle)
        state["power_limit_w"] = limit / 1000 if limit is not None else None
        sm = getattr(nvml, "NVML_CLOCK_SM", 1)
        state["sm_clock_mhz"] = nvml_query(nvml, "nvmlDeviceGetClockInfo", handle, sm)
        state["temperature_c"] = nvml_query(nvml, "nvmlDeviceGetTemperature", handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
        procs = nvml_query(nvml, "nvmlDeviceGetComputeRunningProcesses", handle)
        if procs is not None:
            me = os.getpid()
            state["other_processes"] = [{"pid": p.pid, "used_memory_bytes": getattr(p, "usedGpuMemory", None)}
                                        for p in procs if p.pid != me]
        return state
    except Exception:  # noqa: BLE001 - a GPU we cannot map: no GPU state
        return None
    finally:
        nvml_mod.release()


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def capture_environment(device=None) -> dict[str, Any]:
    """The environment now: host, OS, device name, versions, the host's conditions; ``gpu.start`` where
    NVML sees the GPU."""
    env: dict[str, Any] = {"host": platform.node(), "platform": platform.platform(), **_versions()}
    env["device"] = None if device is None else str(device)
    env["device_name"] = _device_name(device)
    env["conditions"] = start_conditions(current_choice())
    if device is not None and str(device).startswith("cuda"):
        import torch

        index = torch.device(device).index
        state = gpu_state(torch.cuda.current_device() if index is None else index)
        if state is not None:
            env["driver"] = state.pop("driver", None)
            env["gpu"] = {"start": state}
    return env


def finish_environment(env: dict[str, Any], device=None) -> dict[str, Any]:
    """Add the GPU state and the host's load at the end of a measurement (clocks, temperature and other
    work drift during a run)."""
    if "conditions" in env:
        finish_conditions(env["conditions"])
    if device is not None and "gpu" in env:
        import torch

        index = torch.device(device).index
        state = gpu_state(torch.cuda.current_device() if index is None else index)
        if state is not None:
            state.pop("driver", None)
            env["gpu"]["end"] = state
    return env
