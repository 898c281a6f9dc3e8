"""NVIDIA Jetson power rails (INA3221 monitors) read straight from sysfs.

The module input rail (``VDD_IN``, ``POM_5V_IN``) is the board's total. Other rails are shown apart
and labelled for what they really feed: Orin Nano/NX have no GPU-only rail, their ``VDD_CPU_GPU_CV``
is CPU+GPU+CV together. jetson-stats (jtop) is not needed: it is AGPL-licensed and averages over 1 s.
"""

from __future__ import annotations

import glob
import os
import time

from .sensor import Reading, Sensor

SYSFS_ROOT = "/sys"
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")  # module/system input = total
LABELS = {
    "VDD_IN": "module input (total)",
    "POM_5V_IN": "module input (total)",
    "VIN_SYS_5V0": "system 5V input (total)",
    "VDD_CPU_GPU_CV": "CPU+GPU+CV (shared rail)",
    "VDD_SOC": "SoC",
    "VDD_GPU_SOC": "GPU+SoC (shared rail)",
    "VDD_CPU_CV": "CPU+CV",
    "VDDQ_VDD2_1V8AO": "DRAM+always-on",
    "POM_5V_GPU": "GPU",
    "POM_5V_CPU": "CPU",
    "VDD_SYS_GPU": "GPU",
    "VDD_SYS_CPU": "CPU",
    "VDD_SYS_SOC": "SoC",
    "VDD_SYS_DDR": "DRAM",
}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class JetsonRail(Sensor):
    """One INA3221 channel: power = voltage x current, or the driver's power file."""

    kind = "jetson-rail"
    method = "integrated INA3221 rail power (sysfs)"

    def __init__(self, rail: str, volt_file: str | None, curr_file: str | None, power_file: str | None = None,
                 update_interval_ms: int | None = None) -> None:
        self.rail = rail
        self.name = f"{rail} - {LABELS.get(rail, rail)}"
        self._volt, self._curr, self._power = volt_file, curr_file, power_file
        self.counted_in_total = rail in INPUT_RAILS
        if update_interval_ms:
            self.note = f"INA3221 update interval {update_interval_ms} ms"

    def read(self) -> Reading:
        t_before = time.perf_counter()
        if self._power is not None:
            watts = int(_read(self._power)) / 1000.0  # mW
        else:
            watts = int(_read(self._volt)) * int(_read(self._curr)) / 1e6  # mV x mA
        return Reading((t_before + time.perf_counter()) / 2, None, watts)


def _hwmon_rails(root: str) -> list[JetsonRail]:
    rails = []
    for hwmon in sorted(glob.glob(os.path.join(root, "bus/i2c/drivers/ina3221*/*/hwmon/hwmon*"))):
        interval = None
        try:
            interval = int(_read(os.path.join(hwmon, "update_interval")))
        except (OSError, ValueError):
            pass
        for label_file in sorted(glob.glob(os.path.join(hwmon, "in*_label"))):
            channel = os.path.basename(label_file)[2:].split("_")[0]
            rail = _read(label_file)
            volt, curr = os.path.join(hwmon, f"in{channel}_input"), os.path.join(hwmon, f"curr{channel}_input")
            if rail.lower().startswith("sum of") or not (os.path.exists(volt) and os.path.exists(curr)):
                continue
            rails.append(JetsonRail(rail, volt, curr, update_interval_ms=interval))
    return rails


def _iio_rails(root: str) -> list[JetsonRail]:
    """Older JetPack (ina3221x driver): rail_name_N and in_power N_input (mW)."""
    rails = []
    for dev in sorted(glob.glob(os.path.join(root, "bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for name_file in sorted(glob.glob(os.path.join(dev, "rail_name_*"))):
            n = name_file.rsplit("_", 1)[-1]
            power = os.path.join(dev, f"in_power{n}_input")
            if os.path.exists(power):
                rails.append(JetsonRail(_read(name_file), None, None, power_file=power))
    return rails


def discover(root: str | None = None) -> tuple[list[JetsonRail], str | None]:
    """The readable rails, or ([], why-not). Without a module input rail, every rail counts."""
    root = root or SYSFS_ROOT
    rails = _hwmon_rails(root) or _iio_rails(root)
    if not rails:
        return [], "no INA3221 rails in sysfs"
    readable = []
    for rail in rails:
        try:
            rail.read()
            readable.append(rail)
        except (OSError, ValueError):
            continue
    if not readable:
        return [], "INA3221 rails present but unreadable"
    if not any(r.counted_in_total for r in readable):
        for r in readable:
            r.counted_in_total = True
            r.note = "no module input rail: the total is the sum of rails"
    return readable, None
