"""Clocks and the one timed loop: marks on the devices' timelines, and one request (or decode pass) timed.

``timed_run`` is the only decode loop the measurement has: TTFT is its prefill, TPOT its marked steps,
TTLT the whole request with its split, and the shared loop takes all of them from one request.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .devices import cuda_indices
from .devices import synchronize as synchronize_devices


class Clock:
    """Marks on the devices' timelines: CUDA events on every GPU the model occupies, perf_counter on CPU.

    A mark records one event per GPU; the time of a mark is when the *last* GPU reached it (each GPU's
    event timed from its own start event, recorded right after a synchronize of all of them), so a
    forward split over several GPUs (device_map) ends when its last GPU's work ends. ``host(mark)``
    maps a mark to perf_counter seconds (anchored at ``start()``), so phase edges line up with the
    energy sampler's timeline."""

    def __init__(self, devices: list[torch.device]):
        self.devices = list(devices)
        self.indices = cuda_indices(self.devices)
        self.cuda = bool(self.indices)
        self._pool: list[tuple[Any, ...]] = []
        self._used = 0
        self._base_t = 0.0
        self._base = None

    def start(self) -> Any:
        """Synchronize every device, anchor host time, and return the first mark of an iteration."""
        self.sync()
        self._used = 0
        self._base_t = time.perf_counter()
        self._base = self.mark()
        return self._base

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        if self._used == len(self._pool):
            self._pool.append(tuple(torch.cuda.Event(enable_timing=True) for _ in self.indices))
        events = self._pool[self._used]
        self._used += 1
        for index, ev in zip(self.indices, events):
            ev.record(torch.cuda.current_stream(index))
        return events

    def sync(self) -> None:
        synchronize_devices(self.devices)

    def _since_base(self, m: Any) -> float:
        return max(b.elapsed_time(e) for b, e in zip(self._base, m)) / 1e3

    def seconds(self, a: Any, b: Any) -> float:
        if not self.cuda:
            return b - a
        if len(self.indices) == 1:
            return a[0].elapsed_time(b[0]) / 1e3
        return self._since_base(b) - self._since_base(a)

    def host(self, m: Any) -> float:
        return self._base_t + (self._since_base(m) if self.cuda else m - self._base)


def timed_run(session, clock: Clock, *, prefill: bool, steps: int, mark_steps: bool) -> dict[str, Any]:
    """One prefill (or a decode restart) then ``steps`` decode steps, timed on ``clock``.

    Returns ``t`` ([the whole run's seconds]), ``prefill`` and ``decode`` seconds, ``decode_steps``, ``edges``
    (perf_counter seconds of start, end of prefill, end), and ``steps`` (each step's seconds) when
    ``mark_steps``: every step then gets a mark, which costs one event per step."""
    if not prefill:
        session.restart_decode()
    a = clock.start()
    if prefill:
        session.prefill()
    b = clock.mark() if prefill else a
    marks = [b]
    for _ in range(steps):
        session.decode_step()
        if mark_steps:
            marks.append(clock.mark())
    c = clock.mark() if steps and not mark_steps else marks[-1]
    clock.sync()
    out = {"t": [clock.seconds(a, c)], "prefill": clock.seconds(a, b), "decode_steps": steps,
           "decode": clock.seconds(b, c), "edges": (clock.host(a), clock.host(b), clock.host(c))}
    if mark_steps:
        out["steps"] = [clock.seconds(x, y) for x, y in zip(marks, marks[1:])]
    return out
