"""``LatencySettings``: every latency option in one frozen, JSON-able object, validated once where it is made.

The magics, the command, ``measure_latency(**kwargs)``, the grid, the replicas (their options file) and
paired rounds all take it; it is the report envelope's ``settings``. Defaults come from ``core/defaults``
only. A bad value raises ``GenerationInputError`` (one line) before any model work.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator

from ..core import cost, defaults
from .errors import GenerationInputError

PHASES = ("ttft", "tpot", "ttlt")
COMPILE_MODES = ("regional", "whole")

Lengths = int | tuple[int, ...]


def _whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        what = (f"an integer from {low} to {high}" if high is not None else
                "a positive integer" if low == 1 else f"an integer >= {low}")
        raise GenerationInputError(f"{name} must be {what}, got {value!r}")
    return value


def _lengths(name: str, value: Any) -> Lengths:
    """One positive int, or several (a grid): kept as a tuple without repeats, a single value as itself."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise GenerationInputError(f"{name} needs at least one value")
    values = list(dict.fromkeys(_whole(name, v, 1) for v in values))
    return values[0] if len(values) == 1 else tuple(values)


def _seconds(name: str, value: Any, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise GenerationInputError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def _rate(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise GenerationInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _cost_rate(name: str, value: Any) -> float | None:
    """A cost rate given, or the environment's default for it (None: no cost figures)."""
    try:
        return cost.check_rate(name, value) if value is not None else cost.rate_from_env(name)
    except cost.CostRateError as exc:
        raise GenerationInputError(str(exc)) from None


def _cooldown(value: Any) -> float | str | None:
    """None (no wait), seconds >= 0, or "auto" (until the GPU is back near idle: ``latency.cooldown``)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise GenerationInputError(f"cooldown must be a number of seconds >= 0 or 'auto', got {value!r}")
    return float(value)


def _flag(name: str, value: Any, tristate: bool = True) -> bool | None:
    if value is None and tristate:
        return None
    if not isinstance(value, bool):
        raise GenerationInputError(f"{name} must be True or False{' or None' if tristate else ''}, got {value!r}")
    return value


def _text(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise GenerationInputError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _phases(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    phases = tuple(dict.fromkeys(str(p).lower() for p in (value or PHASES)))
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise GenerationInputError(f"unknown phase {unknown[0]!r}: choose from ttft, tpot, ttlt")
    return phases


def _compile(value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in COMPILE_MODES:
        return value.lower()
    raise GenerationInputError(f"compile must be True, False, 'regional' or 'whole', got {value!r}")


def _prefill(value: Any) -> str:
    if isinstance(value, str) and value.lower() in defaults.PREFILL_ENGINES:
        return value.lower()
    raise GenerationInputError(f"prefill must be one of {', '.join(defaults.PREFILL_ENGINES)}, got {value!r}")


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class LatencySettings:
    """What a latency measurement is asked to do. ``batch``/``prompt_len``/``gen_len``: one value each, or
    several (a grid). ``energy``/``cuda_graph``/``compile`` None = the device's default. ``prefill``:
    "auto" (a compiled prefill step in a CUDA graph where decode has one) or "eager" (plain transformers).
    ``energy_window_s``: a phase's energy window lasts at least this long. ``ngpus`` > 1: replicas.
    ``rounds``: alternating rounds of a paired A/B. ``cooldown``: before each paired round and grid cell
    after the first, sleep this many seconds, or "auto": wait until the GPU's power and temperature are
    back near the idle read at the start (``latency.cooldown``); None: no wait."""

    phases: tuple[str, ...] = PHASES
    batch: Lengths = defaults.BATCH
    prompt_len: Lengths = defaults.PROMPT_LEN
    gen_len: Lengths = defaults.GEN_LEN
    warmup: int = defaults.WARMUP
    repeats: int = defaults.REPEATS
    min_time: float = defaults.MIN_TIME_S
    max_time: float | None = None
    rel_ci: float = defaults.REL_CI
    energy: bool | None = None
    energy_window_s: float | None = None   # None: defaults.ENERGY_WINDOW_S, read when the settings are made
    cuda_graph: bool | None = None
    compile: bool | str | None = None
    prefill: str = defaults.PREFILL
    ngpus: int = defaults.NGPUS
    rounds: int = defaults.PAIRED_ROUNDS
    shared_runs: bool = True
    memory: bool = True
    seed: int = defaults.SEED
    label: str | None = None
    prompt: str | None = None
    peak_bw: float | None = None
    peak_flops: float | None = None
    usd_per_gpu_hour: float | None = None   # None: the environment's (core.cost.RATE_ENV), else no cost shown
    usd_per_kwh: float | None = None
    gco2_per_kwh: float | None = None
    cooldown: float | str | None = None

    def __post_init__(self) -> None:
        checks = {
            "phases": _phases(self.phases),
            "batch": _lengths("batch", self.batch),
            "prompt_len": _lengths("prompt length", self.prompt_len),
            "gen_len": _lengths("gen length", self.gen_len),
            "warmup": _whole("warmup", self.warmup, 0),
            "repeats": _whole("repeats", self.repeats, 1),
            "min_time": _seconds("min time", self.min_time),
            "max_time": None if self.max_time is None else _seconds("max time", self.max_time),
            "rel_ci": _seconds("rel_ci", self.rel_ci),
            "energy": _flag("energy", self.energy),
            "energy_window_s": _seconds("energy window", defaults.ENERGY_WINDOW_S if self.energy_window_s is None
                                        else self.energy_window_s),
            "cuda_graph": _flag("cuda_graph", self.cuda_graph),
            "compile": _compile(self.compile),
            "prefill": _prefill(self.prefill),
            "ngpus": _whole("ngpus", self.ngpus, 1),
            "rounds": _whole("rounds", self.rounds, 1, defaults.MAX_PAIRED_ROUNDS),
            "shared_runs": _flag("shared_runs", self.shared_runs, tristate=False),
            "memory": _flag("memory", self.memory, tristate=False),
            "seed": _whole("seed", self.seed, 0),
            "label": _text("label", self.label),
            "prompt": _text("prompt", self.prompt),
            "peak_bw": _rate("peak_bw", self.peak_bw),
            "peak_flops": _rate("peak_flops", self.peak_flops),
            **{name: _cost_rate(name, getattr(self, name)) for name in cost.RATES},
            "cooldown": _cooldown(self.cooldown),
        }
        for name, value in checks.items():
            object.__setattr__(self, name, value)
        self._check_together()

    def _check_together(self) -> None:
        if "tpot" in self.phases and min(self.values("gen_len")) < 2:
            raise GenerationInputError("TPOT needs at least 2 generated tokens: raise --gen-len")
        if self.prompt is not None and self.is_grid:
            raise GenerationInputError("a grid uses random prompts of each length: drop --prompt, or give one length")
        if self.ngpus > 1 and any(b % self.ngpus for b in self.values("batch")):
            raise GenerationInputError(f"batch {self.batch} does not split over {self.ngpus} replicas: give a "
                                       f"multiple of {self.ngpus} (the batch is global, as in ELANA)")

    # -- reading ---------------------------------------------------------------------------------
    def values(self, name: str) -> tuple[int, ...]:
        value = getattr(self, name)
        return value if isinstance(value, tuple) else (value,)

    @property
    def is_grid(self) -> bool:
        return any(len(self.values(n)) > 1 for n in ("batch", "prompt_len", "gen_len"))

    @property
    def forced_few(self) -> bool:
        """``min_time`` 0: the user asked for exactly ``repeats`` runs, below the sample floor if so."""
        return self.min_time == 0

    def cells(self) -> Iterator["LatencySettings"]:
        """One settings per grid cell, ordered by prompt length, gen length, then batch."""
        for p in self.values("prompt_len"):
            for g in self.values("gen_len"):
                for b in self.values("batch"):
                    yield self.replace(batch=b, prompt_len=p, gen_len=g)

    def replace(self, **changes: Any) -> "LatencySettings":
        return dataclasses.replace(self, **changes)

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencySettings":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise GenerationInputError(f"unknown latency setting {unknown[0]!r}")
        return cls(**{k: _tuple(v) for k, v in data.items()})


def check_request(batch: Any, prompt_len: Any, gen_len: Any) -> None:
    """The request's lengths, for callers that build a session without settings (the profile)."""
    for name, value in (("batch", batch), ("prompt length", prompt_len), ("generated length", gen_len)):
        _whole(name, value, 1)


def settings_from(kwargs: dict[str, Any]) -> LatencySettings:
    """``measure_latency``'s keyword arguments as settings (None means the default; an unknown name is refused)."""
    names = {f.name for f in dataclasses.fields(LatencySettings)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unexpected latency option {unknown[0]!r}")
    tristate = {"energy", "cuda_graph", "compile", "max_time", "label", "prompt", "peak_bw", "peak_flops",
                "energy_window_s", "cooldown", *cost.RATES}
    given = {k: v for k, v in kwargs.items() if v is not None or k in tristate}
    return LatencySettings(**{k: _tuple(v) for k, v in given.items()})
