"""The CPU thread count of a measurement: chosen from the cores actually free, not inherited.

torch starts one intra-op thread per core and every operator waits for the slowest of them, so a thread
that shares its core with another process stalls all the others: on a 2-core machine loaded by other
work, 2 threads ran a decode step in 192-270 ms where 1 thread ran it in 45-62 ms. ``cpu_threads``
samples the cores other processes keep busy (``SAMPLE_S``, from /proc/stat), runs the measurement on
the cores left free (rounded, at least 1, never more than torch had) and restores torch's count after.
The choice is recorded in the report's ``environment["conditions"]["threads"]``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterator

from .conditions import other_busy_cores, snapshot, usable_cores

SAMPLE_S = 0.05   # long enough for a few /proc/stat ticks (10 ms) on every core
_ACTIVE: list[dict[str, Any]] = []   # the choices in force, innermost last


def current_choice() -> dict[str, Any] | None:
    """The thread choice in force (a copy), or None outside ``cpu_threads``."""
    return dict(_ACTIVE[-1]) if _ACTIVE else None


def busy_cores_now(seconds: float = SAMPLE_S) -> float | None:
    """Cores other processes keep busy, sampled over ``seconds`` (None without /proc counters)."""
    cores = usable_cores()
    start = snapshot(cores)
    time.sleep(seconds)
    return other_busy_cores(start, snapshot(cores))


def choose_threads(cores: int, busy: float | None, inherited: int) -> int:
    """The threads for ``cores`` of which ``busy`` are kept busy by others: the free cores, rounded to the
    nearest whole core, at least 1 and at most ``inherited`` (a count the user lowered stays low)."""
    free = cores - (busy or 0.0)
    return max(1, min(inherited, math.floor(free + 0.5)))


def _is_cpu(device: Any) -> bool:
    if isinstance(device, (list, tuple)):   # several models' devices: any on the CPU
        return any(_is_cpu(d) for d in device)
    return device is None or str(device).split(":")[0] == "cpu"


@contextlib.contextmanager
def cpu_threads(device: Any = None, threads: int | None = None) -> Iterator[dict[str, Any] | None]:
    """Run the block with torch's CPU threads chosen for a measurement on ``device`` (None: the CPU;
    a list: any of them on the CPU),
    restored afterwards; yields the choice (``threads``, ``inherited``, ``cores``, ``other_busy_cores``,
    ``how``), or None on a GPU, where torch's CPU threads are left alone. ``threads``: this count, not a
    chosen one. Inside another ``cpu_threads`` block the outer choice holds (a paired run, a grid or a
    user's ``with cpu_threads(threads=1):`` decides once for every measurement in it)."""
    if not _is_cpu(device):
        yield None
        return
    if _ACTIVE and threads is None:
        yield current_choice()
        return
    import torch

    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    inherited, cores = torch.get_num_threads(), len(usable_cores())
    busy = None if threads is not None else busy_cores_now()
    chosen = threads if threads is not None else choose_threads(cores, busy, inherited)
    choice = {"threads": chosen, "inherited": inherited, "cores": cores,
              "other_busy_cores": None if busy is None else round(busy, 2),
              "how": "given" if threads is not None else "free cores"}
    torch.set_num_threads(chosen)
    _ACTIVE.append(choice)
    try:
        yield dict(choice)
    finally:
        _ACTIVE.pop()
        torch.set_num_threads(inherited)
