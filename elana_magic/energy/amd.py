"""AMD GPUs through amdsmi (ROCm's SMI library): the energy counter where the board has one, power otherwise.

Not yet run on a real AMD card: the calls follow amdsmi's Python interface (ROCm 6.x) and are tested
against a fake ``amdsmi`` module only (tests/energy/test_energy_amd.py).

* ``amdsmi_get_energy_count(h)`` gives ``energy_accumulator`` (``power`` before ROCm 6.4) in ticks of
  ``counter_resolution`` µJ. The counter's width is not reported: one that reads below 2**32 ticks
  when probed is taken to wrap there (older firmware), which a 64-bit counter, never falling, ignores.
* ``amdsmi_get_power_info(h)`` gives socket power in W: ``current_socket_power`` (MI300 and newer),
  ``socket_power`` or ``average_socket_power`` (MI200 and older, Navi), "N/A" where unsupported.

amdsmi is initialised once per process and reference counted, as NVML is (``acquire``/``release``);
the last ``release`` calls ``amdsmi_shut_down``. amdsmi numbers GPUs itself; the HIP-visible indices
(``ROCR_VISIBLE_DEVICES``, then ``HIP_VISIBLE_DEVICES`` or, where that is unset,
``CUDA_VISIBLE_DEVICES``: PyTorch on ROCm addresses AMD GPUs as ``cuda:N``) are mapped back to its
handles, assuming amdsmi lists the GPUs in the order the ROCm runtime does.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from typing import Any

from .sensor import Reading, Sensor

SOURCE = "AMD (amdsmi)"
POWER_KEYS = ("current_socket_power", "socket_power", "average_socket_power")
NARROW_COUNTER_TICKS = 2 ** 32
NOT_INSTALLED = "amdsmi is not installed"
NO_GPU = "no HIP-visible AMD GPU"

_lock = threading.Lock()
_refs = 0
_smi: Any = None  # the module acquired, released by the last ``release``


def load_amdsmi():
    """The ``amdsmi`` module (a test double in ``sys.modules`` wins). It prints when libamd_smi.so is
    missing, and may raise OSError, KeyError or AttributeError on a ROCm version mismatch."""
    with contextlib.redirect_stdout(io.StringIO()):
        import amdsmi
    return amdsmi


def acquire():
    """amdsmi_init (AMD GPUs only) on first use; every acquire needs one ``release``."""
    global _refs, _smi
    with _lock:
        if _refs == 0:
            smi = load_amdsmi()
            flags = getattr(getattr(smi, "AmdSmiInitFlags", None), "INIT_AMD_GPUS", None)
            if flags is None:
                smi.amdsmi_init()
            else:
                smi.amdsmi_init(flags)
            _smi = smi
        _refs += 1
        return _smi


def release() -> None:
    global _refs, _smi
    with _lock:
        if _refs == 0:
            return
        _refs -= 1
        if _refs == 0:
            smi, _smi = _smi, None
            try:
                smi.amdsmi_shut_down()
            except Exception:  # noqa: BLE001 - the library may already be gone at exit
                pass


def _text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _number(value: Any) -> float | None:
    """A reading as a float, None for "N/A" (what amdsmi gives where the board has no such sensor)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _is_gpu(smi, handle) -> bool:
    getter = getattr(smi, "amdsmi_get_processor_type", None)
    if getter is None:
        return True  # old amdsmi: amdsmi_init(INIT_AMD_GPUS) gave GPU handles only
    try:
        kind = getter(handle)
    except Exception:  # noqa: BLE001 - the type can't be read: keep the handle
        return True
    kind = kind.get("processor_type", "") if isinstance(kind, dict) else kind
    kind = str(getattr(kind, "name", kind)).upper()
    return "AMD_GPU" in kind and "NON_AMD" not in kind


def gpu_handles(smi) -> list[Any]:
    """amdsmi's handles of AMD GPUs (CPU handles, where amdsmi lists them, left out)."""
    return [h for h in smi.amdsmi_get_processor_handles() if _is_gpu(smi, h)]


def _uuid(smi, handle) -> str:
    try:
        return str(smi.amdsmi_get_gpu_device_uuid(handle))
    except Exception:  # noqa: BLE001
        return ""


def _plain_uuid(text: str) -> str:
    text = text.strip().lower()
    return (text[4:] if text.startswith("gpu-") else text).replace("-", "")


def _select(smi, handles: list[Any], env: str) -> list[Any]:
    """The handles a ``*_VISIBLE_DEVICES`` value names, in its order; as HIP/CUDA do, the list stops at
    the first entry that names no device. ``GPU-<uuid>`` entries match amdsmi's UUID (or a unique prefix)."""
    out = []
    for entry in (e.strip() for e in env.split(",")):
        if not entry:
            break
        if entry.lstrip("-").isdigit():
            index = int(entry)
            if not 0 <= index < len(handles):
                break
            out.append(handles[index])
            continue
        prefix = _plain_uuid(entry)
        matches = [h for h in handles if prefix and _plain_uuid(_uuid(smi, h)).startswith(prefix)]
        if len(matches) != 1:
            break
        out.append(matches[0])
    return out


def visible_handles(smi, devices: list[int] | None = None) -> list[tuple[int, Any]]:
    """[(hip_index, handle)] for the HIP-visible AMD GPUs (all, or the indices in ``devices``)."""
    visible = gpu_handles(smi)
    shown = []
    rocr = os.environ.get("ROCR_VISIBLE_DEVICES")
    if rocr is not None:
        visible = _select(smi, visible, rocr)
        shown.append(f"ROCR_VISIBLE_DEVICES={rocr!r}")
    for var in ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(var)
        if value is not None:
            visible = _select(smi, visible, value)
            shown.append(f"{var}={value!r}")
            break
    if devices is None:
        return list(enumerate(visible))
    out = []
    for index in devices:
        if not 0 <= index < len(visible):
            where = f"; {', '.join(shown)}" if shown else ""
            raise ValueError(f"GPU {index} is not visible ({len(visible)} visible AMD GPU(s){where})")
        out.append((index, visible[index]))
    return out


class AmdGpu(Sensor):
    """One HIP-visible AMD GPU: its energy counter where readable, socket power for the timeline."""

    kind = "gpu"
    source = SOURCE
    counted_in_total = True
    counter_tick_s = None  # the update period is not known here: the window differences its edge reads

    def __init__(self, smi, cuda_index: int, handle, note: str = "") -> None:
        self._smi = smi
        self._handle = handle
        self._lock = threading.Lock()  # nested windows may read one GPU from two sampler threads
        self.cuda_index = cuda_index
        self.name = f"GPU {cuda_index} ({self._market_name()})"
        notes = [note] if note else []
        self._power_key = self._probe_power()
        ticks, resolution_uj, why_no_counter = self._probe_counter()
        self.has_counter = ticks is not None
        if self.has_counter:
            self.counter_wrap_j = NARROW_COUNTER_TICKS * resolution_uj / 1e6 if ticks < NARROW_COUNTER_TICKS else None
            self.method = f"{SOURCE} energy counter, difference of the reads at the window's edges"
            self.read_path = "amdsmi_get_energy_count" + (f" + amdsmi_get_power_info[{self._power_key}]"
                                                          if self._power_key else "")
        elif self._power_key is not None:
            self.method = f"integrated {SOURCE} socket power ({self._power_key}; no energy counter: {why_no_counter})"
            self.read_path = f"amdsmi_get_power_info[{self._power_key}]"
            if self._power_key == "average_socket_power":
                notes.append("power is the firmware's running average: short windows are smeared")
        else:
            raise RuntimeError(f"{self.name}: neither energy counter ({why_no_counter}) nor socket power readable")
        self.note = "; ".join(notes)

    def _market_name(self) -> str:
        try:
            name = str(self._smi.amdsmi_get_gpu_asic_info(self._handle).get("market_name") or "").strip()
        except Exception:  # noqa: BLE001 - the name is only a label
            name = ""
        if not name or name.upper() == "N/A":
            return "AMD GPU"
        return name if name.upper().startswith("AMD") else f"AMD {name}"

    def _count(self) -> tuple[float, float]:
        """(ticks, µJ per tick) from amdsmi_get_energy_count."""
        data = self._smi.amdsmi_get_energy_count(self._handle)
        ticks = data.get("energy_accumulator", data.get("power"))  # "power" before ROCm 6.4
        ticks, resolution = _number(ticks), _number(data.get("counter_resolution"))
        if ticks is None or resolution is None or resolution <= 0:
            raise RuntimeError(f"amdsmi_get_energy_count gave no counter ({data!r})")
        return ticks, resolution

    def _probe_counter(self) -> tuple[float | None, float, str]:
        """(ticks, µJ per tick, "") or (None, 0, why the counter can't be read)."""
        try:
            return *self._count(), ""
        except Exception as exc:  # noqa: BLE001 - AMDSMI_STATUS_NOT_SUPPORTED, a VM guest, old firmware
            return None, 0.0, _text(exc)

    def _probe_power(self) -> str | None:
        try:
            info = self._smi.amdsmi_get_power_info(self._handle)
        except Exception:  # noqa: BLE001 - no power: the counter alone (timeline from its differences)
            return None
        return next((k for k in POWER_KEYS if _number(info.get(k)) is not None), None)

    def power_w(self) -> float | None:
        if self._power_key is None:
            return None
        return _number(self._smi.amdsmi_get_power_info(self._handle).get(self._power_key))

    def read(self) -> Reading:
        with self._lock:
            t_before = time.perf_counter()
            energy = None
            if self.has_counter:
                ticks, resolution = self._count()
                energy = ticks * resolution / 1e6
            power = self.power_w()
            t_after = time.perf_counter()
        if energy is None and power is None:
            raise RuntimeError(f"amdsmi_get_power_info gave no {self._power_key}")
        return Reading((t_before + t_after) / 2, energy, power)


def discover(devices: list[int] | None) -> tuple[list[AmdGpu], str | None, Any]:
    """The measured AMD GPUs, or ([], why-not, None). The returned module must be ``release``d when non-None.

    A ValueError (a ``devices`` index not visible) propagates, as NVML's does.
    """
    try:
        smi = acquire()
    except ImportError:
        return [], NOT_INSTALLED, None
    except Exception as exc:  # noqa: BLE001 - OSError (no libamd_smi.so), AmdSmiLibraryException, ...
        return [], f"amdsmi_init failed: {_text(exc)}", None
    try:
        found = visible_handles(smi, devices)
        sensors = [AmdGpu(smi, index, handle) for index, handle in found]
    except ValueError:
        release()
        raise
    except Exception as exc:  # noqa: BLE001
        release()
        return [], f"amdsmi failed: {_text(exc)}", None
    if not sensors:
        release()
        return [], NO_GPU, None
    return sensors, None, smi
