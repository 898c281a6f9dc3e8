"""Measured peak memory per phase, beside the analytic size (model + cache, from ``size/``).

* CUDA: the caching allocator's peak, allocated and reserved, reset before each phase
  (``torch.cuda.reset_peak_memory_stats``), and the device's used memory from NVML at the phase's end.
  The allocated peak holds every live tensor, so peak - (model + cache) = activations and workspace.
* CPU: the growth of the process's resident memory over the phase. Linux's peak RSS (``VmHWM``) is
  reset to the current RSS by writing ``5`` to ``/proc/self/clear_refs`` before the phase and read after
  it (exact, no thread); where that file can't be written, a thread (``elana-memory``) samples the RSS
  (psutil when installed, else ``/proc/self/statm``) every millisecond. The report says which. The
  weights were resident before the phase, so the growth is compared with the cache the phase builds.

``ACTIVATION_PEAKS`` keeps the activation peaks measured in this process, keyed by ``peaks_key`` (the model
object; not ``core.fingerprint.model_fingerprint``, which names what the model is), so that
``size.fit`` can add them to the analytic size when it answers the largest batch or length that fits.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import torch

CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def resident_bytes() -> int | None:
    """The process's resident memory now (psutil, else /proc/self/statm), or None."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _can_reset_hwm() -> bool:
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


class _RssSampler:
    """Peak RSS seen by a thread sampling every ``interval`` seconds until ``stop()``."""

    def __init__(self, interval: float = 1e-3):
        self.interval = interval
        self.peak = resident_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="elana-memory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = resident_bytes()
            if rss is not None and rss > self.peak:
                self.peak = rss
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        rss = resident_bytes() or 0
        return max(self.peak, rss)


class MemoryProbe:
    """``start()`` before a phase, ``stop()`` after it: the phase's measured peak (a dict)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.method = "CUDA allocator peak (allocated and reserved, reset before the phase); NVML used memory at its end"
        elif _can_reset_hwm():
            self.method = "growth of the process's resident memory: peak RSS (VmHWM) reset through /proc/self/clear_refs"
        else:
            self.method = ("growth of the process's resident memory: RSS sampled every 1 ms by a thread ("
                           + ("psutil" if _has_psutil() else "/proc/self/statm") + ")")
        self._use_hwm = not self.cuda and "VmHWM" in self.method
        self._sampler: _RssSampler | None = None
        self._start_rss = 0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        self._start_rss = resident_bytes() or 0
        if self._use_hwm:
            with open(CLEAR_REFS, "w") as f:
                f.write("5")
        else:
            self._sampler = _RssSampler()

    def stop(self) -> dict[str, Any]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return {"peak_bytes": int(torch.cuda.max_memory_allocated(self.device)),
                    "reserved_bytes": int(torch.cuda.max_memory_reserved(self.device)),
                    "nvml_used_bytes": _nvml_used(self.device), "kind": "allocated"}
        if self._sampler is not None:
            peak, self._sampler = self._sampler.stop(), None
        else:
            hwm = _status_kib("VmHWM")
            peak = hwm * 1024 if hwm is not None else (resident_bytes() or 0)
        return {"peak_bytes": max(0, peak - self._start_rss), "reserved_bytes": None, "nvml_used_bytes": None,
                "kind": "rss_growth"}

    def close(self) -> None:
        """Stop a sampling thread left running by an interrupted phase."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


def _nvml_used(device: torch.device) -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML is a nicety beside the allocator's own figures
        return None


# -- analytic --------------------------------------------------------------------------------------
def analytic_bytes(model: torch.nn.Module, batch: int, context: int) -> dict[str, int | None]:
    """Model (params + buffers, by storage) and cache at ``context`` tokens, from size/ (None: unknown)."""
    from ..size.cache_shapes import cache_layout
    from ..size.weights import count_weights

    weights = count_weights(model)
    model_bytes = weights.params_bytes + weights.buffers_bytes
    cache = None
    config = getattr(model, "config", None)
    if config is not None:
        try:
            layout = cache_layout(config)
            if layout.known:
                dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
                cache = sum(kv + ssm for kv, ssm in layout.layer_bytes(batch, context, dtype.itemsize, 4))
        except Exception:  # noqa: BLE001 - an unusual config: the measured figure stands alone
            cache = None
    return {"model_bytes": model_bytes, "cache_bytes": cache}


# Which phase holds how much cache: a prefill builds the prompt's, decode steps and requests end at prompt + gen.
PHASE_PARTS = {"prefill": "ttft", "decode": "tpot", "request": "ttlt"}


def phase_entry(model, part: str, measured: dict[str, Any], batch: int, prompt_len: int, gen_len: int,
                static_cache: bool, method: str) -> dict[str, Any]:
    """One phase's memory: analytic model + cache, the measured peak and their difference."""
    context = prompt_len if part == "prefill" and not static_cache else prompt_len + gen_len
    a = analytic_bytes(model, batch, context)
    grown = a["cache_bytes"]
    if part == "decode" and not static_cache and grown is not None:
        # decode steps start from the prompt's cache, which the phase did not build
        grown -= analytic_bytes(model, batch, prompt_len)["cache_bytes"] or 0
    analytic = None if a["cache_bytes"] is None else a["model_bytes"] + a["cache_bytes"]
    if measured["kind"] == "allocated":
        # every live tensor is in the allocator's peak: weights, cache, activations, workspace
        compared = analytic
    else:
        # resident growth over the phase: the weights (and a static cache) were resident before it
        compared = None if static_cache else grown
    diff = None if compared is None else measured["peak_bytes"] - compared
    return {"phase": part, "context": context, "analytic_model_bytes": a["model_bytes"],
            "analytic_cache_bytes": a["cache_bytes"], "analytic_bytes": analytic,
            "measured_peak_bytes": measured["peak_bytes"], "measured_kind": measured["kind"],
            "reserved_peak_bytes": measured.get("reserved_bytes"), "nvml_used_bytes": measured.get("nvml_used_bytes"),
            "compared_bytes": compared, "activation_bytes": diff, "method": method}


# -- measured activation peaks of this process, for size.fit -------------------------------------
ACTIVATION_PEAKS: dict[str, dict[str, Any]] = {}


def peaks_key(model: torch.nn.Module) -> str:
    """The model object in this process plus its class and config (a reloaded model is a new entry)."""
    config = getattr(model, "config", None)
    shape = ""
    if config is not None:
        cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        shape = ",".join(str(getattr(cfg, k, "")) for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
    return f"{type(model).__name__}@{id(model):x}[{shape}]"


def remember_peaks(model: torch.nn.Module, device: torch.device, batch: int, prompt_len: int, gen_len: int,
                   phases: list[dict[str, Any]]) -> None:
    """Keep the largest measured prefill activation peak per model (the phase that needs the most)."""
    prefill = next((p for p in phases if p["phase"] == "prefill" and p["activation_bytes"] is not None), None)
    if prefill is None:
        return
    key = peaks_key(model)
    tokens = batch * prompt_len
    old = ACTIVATION_PEAKS.get(key)
    if old is None or tokens >= old["tokens"]:
        ACTIVATION_PEAKS[key] = {"device": str(device), "batch": batch, "prompt_len": prompt_len, "gen_len": gen_len,
                      "tokens": tokens, "activation_bytes": max(0, prefill["activation_bytes"]),
                      "kind": prefill["measured_kind"]}
