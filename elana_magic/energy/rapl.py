"""CPU package and DRAM energy from Intel/AMD RAPL through /sys/class/powercap (with wrap-around).

Each ``intel-rapl:N`` zone is a CPU package; its ``dram`` subzone (where present) is memory. The
package's ``core``/``uncore`` subzones are already inside the package figure and are not read.
``energy_uj`` is readable by root only on most kernels since 2020; then ``reason`` says so.
"""

from __future__ import annotations

import glob
import os
import time

from .sensor import Reading, Sensor

POWERCAP_ROOT = "/sys/class/powercap"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class RaplZone(Sensor):
    """One RAPL zone: a cumulative µJ counter that wraps at ``max_energy_range_uj``."""

    has_counter = True
    counter_tick_s = None  # updates about every ms: fine enough to read at the window's edges

    def __init__(self, path: str, name: str, kind: str) -> None:
        self.path = path
        self._energy_file = os.path.join(path, "energy_uj")
        self.name = name
        self.kind = kind
        self.method = "RAPL energy counter (powercap)"
        try:
            self.counter_wrap_j = int(_read(os.path.join(path, "max_energy_range_uj"))) / 1e6
        except (OSError, ValueError):
            self.counter_wrap_j = None

    def read(self) -> Reading:
        t_before = time.perf_counter()
        energy = int(_read(self._energy_file)) / 1e6
        return Reading((t_before + time.perf_counter()) / 2, energy, None)


def discover(root: str | None = None) -> tuple[list[RaplZone], str | None]:
    """Readable package and DRAM zones, or ([], why-not)."""
    root = root or POWERCAP_ROOT
    packages = sorted(p for p in glob.glob(os.path.join(root, "intel-rapl:*")) if p.count(":") == 1)
    if not packages:
        return [], f"no RAPL zones in {root}" if os.path.isdir(root) else f"{root} absent"
    zones: list[RaplZone] = []
    unreadable = []
    for package in packages:
        candidates = [(package, "cpu-package")]
        subzones = {os.path.basename(p): p for p in glob.glob(package + ":*") +  # flat class links
                    glob.glob(os.path.join(package, os.path.basename(package) + ":*"))}  # nested dirs
        for sub in (subzones[k] for k in sorted(subzones)):
            try:
                if _read(os.path.join(sub, "name")) == "dram":
                    candidates.append((sub, "dram"))
            except OSError:
                continue
        for path, kind in candidates:
            try:
                label = _read(os.path.join(path, "name"))
                if path != package and kind == "dram":
                    label = f"{_read(os.path.join(package, 'name'))} dram"
                int(_read(os.path.join(path, "energy_uj")))
            except PermissionError:
                unreadable.append(path)
                continue
            except (OSError, ValueError):
                continue
            zones.append(RaplZone(path, f"CPU {label} (RAPL)", kind))
    if zones:
        return zones, None
    if unreadable:
        return [], (f"RAPL energy_uj is readable by root only ({unreadable[0]}/energy_uj): "
                    "run `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj` to allow it")
    return [], f"no readable RAPL zone in {root}"
