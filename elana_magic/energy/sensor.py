"""What every energy sensor offers the window: one ``read()`` giving a timestamp, energy and/or power."""

from __future__ import annotations

from typing import NamedTuple


class Reading(NamedTuple):
    t: float                 # perf_counter seconds (middle of the read)
    energy_j: float | None   # cumulative counter (J), None where the sensor has none
    power_w: float | None    # instant power (W), None where the sensor has none


class Sensor:
    """A source of energy: an NVIDIA or AMD GPU, a Jetson rail, a RAPL zone."""

    name: str = "sensor"
    kind: str = "sensor"                # "gpu", "jetson-rail", "cpu-package", "dram"
    source: str = ""                    # where the reading comes from, where several are possible ("jtop", "sysfs")
    method: str = ""
    note: str = ""
    has_counter: bool = False           # a cumulative energy counter
    counter_tick_s: float | None = None  # counter update period when coarse (NVML ~0.1 s); None: fine
    counter_wrap_j: float | None = None  # the counter wraps to 0 past this value (RAPL)
    counted_in_total: bool = True       # summed into the report's energy_j

    def read(self) -> Reading:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sensor holds (a jtop client); idempotent. Most sensors hold nothing."""
