"""The devices a model occupies, and what every timed edge does on all of them.

A model loaded with ``device_map`` (accelerate) lists its placement in ``model.hf_device_map``
(module name -> 0, "cuda:1", "cpu", "disk", ...); any other model is where its parameters and
buffers are. Timing, energy and peak memory then cover every CUDA device in that set: a forward
over a model split across GPUs ends when the last GPU's work ends.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch


def _as_device(value: Any) -> torch.device | None:
    """A device from an ``hf_device_map`` value; None for "disk"/"meta" (offloaded, nothing runs there)."""
    if isinstance(value, torch.device):
        return value
    if isinstance(value, int):
        return torch.device("cuda", value)
    text = str(value)
    if text.isdigit():
        return torch.device("cuda", int(text))
    if text in ("disk", "meta"):
        return None
    device = torch.device(text)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_initialized() else 0)
    return device


def _sorted(devices: set[torch.device]) -> list[torch.device]:
    return sorted(devices, key=lambda d: (d.type != "cuda", d.type, -1 if d.index is None else d.index))


def model_devices(model: torch.nn.Module) -> list[torch.device]:
    """Every device the model occupies: CUDA devices first, by index; CPU last.

    From ``model.hf_device_map`` when the model was dispatched by accelerate, else from the devices
    of its parameters and buffers (CPU when it has none)."""
    placement = getattr(model, "hf_device_map", None)
    found: set[torch.device] = set()
    if isinstance(placement, dict) and placement:
        for value in placement.values():
            device = _as_device(value)
            if device is not None:
                found.add(device)
    if not found:
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.device.type != "meta":
                found.add(tensor.device)
    return _sorted(found) or [torch.device("cpu")]


def cuda_indices(devices: list[torch.device]) -> list[int]:
    """The CUDA-visible indices among ``devices`` (what ``EnergyMeter(devices=...)`` takes)."""
    return [d.index for d in devices if d.type == "cuda" and d.index is not None]


def synchronize(devices: list[torch.device]) -> None:
    """Wait for the queued work of every CUDA device in ``devices``."""
    for index in cuda_indices(devices):
        torch.cuda.synchronize(index)


def reset_peak_memory(devices: list[torch.device]) -> None:
    for index in cuda_indices(devices):
        torch.cuda.reset_peak_memory_stats(index)


def peak_memory(devices: list[torch.device]) -> dict[str, int]:
    """``{"cuda:0": bytes, ...}``: the most memory allocated on each CUDA device since the last reset."""
    return {f"cuda:{i}": int(torch.cuda.max_memory_allocated(i)) for i in cuda_indices(devices)}


_SIDE_STREAMS: dict[int, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> "torch.cuda.Stream":
    """One warm-up stream per device, reused: cuBLAS keeps a workspace per stream, so a new stream per
    session would hold more memory each time (and clearing them all would change the user's cuBLAS state)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SIDE_STREAMS:
        _SIDE_STREAMS[index] = torch.cuda.Stream(index)
    return _SIDE_STREAMS[index]


@contextlib.contextmanager
def graph_capture(graph: "torch.cuda.CUDAGraph", device: torch.device, pool: Any = None) -> Iterator[None]:
    """``torch.cuda.graph``, and after a capture that fails midway (out of memory, an op capture refuses)
    the device's random generator made usable again: such a capture leaves the generator's in-graph
    offset set, and every later random op on that GPU (a model's init) then fails with "Offset
    increment outside graph capture encountered unexpectedly"."""
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    state = torch.cuda.get_rng_state(index)
    try:
        with torch.cuda.graph(graph, pool=pool):
            yield
    except BaseException:
        _fresh_generator_state(index, state)
        raise


def _fresh_generator_state(index: int, state: torch.Tensor) -> None:
    """The device's default generator on a new state (no in-graph offset), at the seed and offset it had."""
    try:
        torch.cuda.default_generators[index].graphsafe_set_state(torch.Generator(device=f"cuda:{index}"))
        torch.cuda.set_rng_state(state, index)
    except (AttributeError, RuntimeError):  # an older torch without graph-safe states: the capture's error stands
        pass
