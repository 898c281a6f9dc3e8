"""The one option spec: every option of the magics and of the ``elana-magic`` command, declared once.

An ``Option`` holds its flags, its type function (which validates: a bad value is refused while the
line is parsed, before any work, with one line saying what to give), its default (the plain API's,
from ``core/defaults``) and its help. ``MAGICS`` and ``COMMAND`` say which options each one takes.
``magic_options(name)`` decorates a magic with IPython's ``argument`` for each of its options;
``add_command_options(parser)`` adds the command's to an argparse parser, ELANA's spellings
(``--prompt_len``, ``--cache_graph``, ...) beside ours.

No heavy imports here: the command's ``--help`` and its bad-input errors come before torch is loaded.
Run ``python -m elana_magic.core.options`` to print the README's table of the command's flags.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import defaults
from .errors import ElanaError


class OptionError(ElanaError):
    """A bad option value, with the whole line to show (what was given and what to give).

    Deliberately not a ValueError: argparse lets it through unchanged, so the message stays ours.
    """


# -- type functions (they validate; each gets the option's flag for its message) -------------------


def _count_word(n: int) -> str:
    return "a whole number" if n == 1 else "whole numbers"


def whole(low: int, example: str, high: int | None = None) -> Callable[[str, "Option"], int]:
    """An int >= ``low`` (and <= ``high`` when given); ``example`` is what to type, e.g. "128 512"."""

    def convert(text: str, opt: "Option") -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            value = None
        if value is None or value < low or (high is not None and value > high):
            many = opt.nargs in ("+", "*")
            bound = f">= {low}" if high is None else f"from {low} to {high}"
            raise OptionError(f"{opt.flag} takes {_count_word(2 if many else 1)} {bound}, "
                              f"e.g. {opt.flag} {example}; got {text!r}")
        return value

    convert.kind = "int"
    return convert


def seconds(low_open: bool, example: str = "2") -> Callable[[str, "Option"], float]:
    """A finite number of seconds: > 0 when ``low_open``, else >= 0."""

    def convert(text: str, opt: "Option") -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0 or (low_open and value == 0):
            bound = "> 0" if low_open else ">= 0"
            raise OptionError(f"{opt.flag} takes a number of seconds {bound}, e.g. {opt.flag} {example}; got {text!r}")
        return value

    convert.kind = "seconds"
    return convert


_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}


def rate(example: str) -> Callable[[str, "Option"], float]:
    """'3.35e12', '3.35T', '3.35 TB/s', '989 TFLOP/s' -> a finite number per second > 0."""

    def convert(text: str, opt: "Option") -> float:
        m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?\d+)?)\s*([kmgtp]?)(?:b|flops?|flop)?(?:/s)?\s*", str(text).lower())
        try:
            value = float(m.group(1)) * _SCALE[m.group(2)] if m else math.nan
        except ValueError:  # e.g. '1.2.3'
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise OptionError(f"{opt.flag} takes a rate > 0 such as {example}; got {text!r}")
        return value

    convert.kind = "rate"
    return convert


def price(example: str, unit: str) -> Callable[[str, "Option"], float]:
    """A finite number >= 0 in ``unit`` (a price or a carbon intensity)."""

    def convert(text: str, opt: "Option") -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise OptionError(f"{opt.flag} takes a number >= 0 in {unit}, e.g. {opt.flag} {example}; got {text!r}")
        return value

    convert.kind = "number"
    return convert


def cooldown(text: str, opt: "Option") -> float | str:
    """A number of seconds >= 0, or "auto"."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise OptionError(f"{opt.flag} takes a number of seconds >= 0 or auto, e.g. {opt.flag} 10 or {opt.flag} auto; "
                          f"got {text!r}")
    return value


def card_name(text: str, opt: "Option") -> str:
    """A GPU's name from the peaks table ("H100", "L4", "Jetson AGX Orin"), quotes removed; the name itself is
    checked by ``latency.projection`` before the measurement (core imports no latency module)."""
    name = str(text).strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
        name = name[1:-1].strip()
    if not name:
        raise OptionError(f'{opt.flag} takes GPU names, e.g. {opt.flag} H100 L4 "Jetson AGX Orin"; got {text!r}')
    return name


def python_name(text: str, opt: "Option") -> str:
    """A name the notebook can hold: an identifier that is not a keyword, a dunder (``__builtins__``) nor a
    builtin (``print``: the report would hide it for the rest of the session)."""
    dunder = text.startswith("__") and text.endswith("__")
    builtin = text in vars(builtins)
    if not text.isidentifier() or keyword.iskeyword(text) or dunder or builtin:
        why = ("a Python keyword" if keyword.iskeyword(text) else
               "a name Python itself uses" if dunder and text.isidentifier() else
               "a Python builtin" if builtin else "not a Python name")
        raise OptionError(f"{opt.flag} takes a Python variable name, e.g. {opt.flag} rep; got {text!r} ({why})")
    return text


def device_indices(text: str, opt: "Option") -> tuple[int, ...]:
    """'0,1' -> (0, 1): CUDA-visible device indices."""
    try:
        devices = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        devices = ()
    if not devices or any(d < 0 for d in devices):
        raise OptionError(f"{opt.flag} takes CUDA device indices like {opt.flag} 0,1; got {text!r}")
    return devices


def dtype(text: str, opt: "Option") -> str:
    """A dtype name torch knows (checked now; the name is passed on)."""
    from ..size.weights import SizeError, parse_dtype

    try:
        parse_dtype(text)
    except SizeError as exc:
        raise OptionError(f"{opt.flag}: {exc}") from None
    return text


def level(text: str, opt: "Option") -> str:
    name = text.upper()
    if name not in LOG_LEVELS:
        raise OptionError(f"{opt.flag} takes one of {', '.join(LOG_LEVELS)}; got {text!r}")
    return name


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


# -- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option. ``flags``: our spellings (the first names it in messages); ``elana``: ELANA's
    spellings and older ones, which only the command accepts; ``convert(text, option)`` validates."""

    key: str
    flags: tuple[str, ...]
    help: str
    convert: Callable[[str, "Option"], Any] | None = None
    default: Any = None
    action: str | None = None
    nargs: str | int | None = None
    const: Any = None
    dest: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    elana: tuple[str, ...] = ()
    group: str = ""
    cpu_default: Any = None  # the command's default where there is no GPU (None: the same as on a GPU)

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else self.key

    @property
    def positional(self) -> bool:
        return not self.flags

    @property
    def type(self) -> Callable[[str], Any] | None:
        if self.convert is None:
            return None
        opt, convert = self, self.convert

        def parse(text: str) -> Any:
            return convert(text, opt)

        parse.__name__ = getattr(convert, "kind", convert.__name__)
        return parse

    def command_help(self) -> str:
        """The help, with the command's CPU-sized default where it has one."""
        text = self.help + (f" Without a GPU: {_fmt(self.cpu_default)}." if self.cpu_default is not None else "")
        return text.replace("%", "%%")

    def names(self, command: bool) -> tuple[str, ...]:
        """What ``add_argument`` takes first: the flags (ELANA's too in the command), or a positional's name."""
        if self.positional:
            return (self.dest or self.key,)
        return self.flags + (self.elana if command else ())

    def kwargs(self, unset: bool = False, command: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``add_argument``; ``unset``: default None (the caller fills it in)."""
        kw: dict[str, Any] = {"help": self.command_help() if command else self.help.replace("%", "%%")}
        for name in ("action", "nargs", "const", "metavar", "choices"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        if self.dest and not self.positional:
            kw["dest"] = self.dest
        if self.convert is not None:
            kw["type"] = self.type
        if self.action not in ("store_true", "store_false") or unset:
            kw["default"] = None if unset else _copy(self.default)
        return kw


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _fmt(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


_B, _P, _G = defaults.BATCH, defaults.PROMPT_LEN, defaults.GEN_LEN
_STEPS = defaults.PROFILE_STEPS

OPTIONS: dict[str, Option] = {o.key: o for o in [
    # positionals: what each takes as MODEL
    Option("model", (), "A model in the notebook (name or expression), or a quoted local folder; two or more, "
           "separated by spaces: a paired A/B in alternating rounds (--label a,b names them).", dest="model"),
    Option("size-model", (), "A model in the notebook (name or expression), or a quoted local folder / hub id "
           "(sized from its config.json on the meta device) or \"random:PRESET\".", dest="model"),
    Option("profile-model", (), "Line magic: the model (a name in the notebook). Cell magic: nothing, the cell "
           "is profiled.", dest="model", nargs="?"),
    Option("command-model", (), "random:PRESET, a local folder or a hub id (default: the embedded "
           "SmolLM2-135M)", dest="model", nargs="?", metavar="MODEL"),
    # phases
    Option("size", ("--size",), "Parameters, buffers, KV cache and SSM state.", action="store_true", group="phases"),
    Option("ttft", ("--ttft",), "Time to first token (one prefill) and J/prompt.", action="store_true", group="phases"),
    Option("tpot", ("--tpot",), "Time per output token (decode steps) and J/token.", action="store_true",
           group="phases"),
    Option("ttlt", ("--ttlt",), "Time to last token (a whole request) and J/request.", action="store_true",
           group="phases"),
    Option("torch-profile", ("--torch-profile",), "Kernel trace for Perfetto and kernel tables of --phase.",
           action="store_true", dest="torch_profile", elana=("--torch_profile",), group="phases"),
    # size
    Option("size-batch", ("--batch",), f"Batch sizes (default {_fmt(defaults.SIZE_BATCH)}; latency measures "
           "every value, the profile uses the first).", whole(1, "1 8"), list(defaults.SIZE_BATCH), nargs="+", metavar="B",
           elana=("--batch_size",), group="size", dest="batch"),
    Option("seq-len", ("--seq-len",), f"Sequence lengths: the context the cache holds (default "
           f"{_fmt(defaults.SIZE_SEQ_LEN)}; the command: the --prompt-len values when only they are given).",
           whole(1, "1024 8192"), list(defaults.SIZE_SEQ_LEN), nargs="+",
           metavar="L", group="size", cpu_default=[defaults.SIZE_SEQ_LEN[0]]),
    Option("cache-dtype", ("--cache-dtype",), "KV/conv cache dtype (e.g. bfloat16, float16, fp8); default: the "
           "model's dtype.", dtype, metavar="DT", group="size"),
    Option("gib", ("--gib",), "Binary units (GiB = 2**30 bytes) instead of SI (GB = 1e9 bytes).",
           action="store_true", group="size"),
    Option("no-check", ("--no-check",), "Skip the measured cross-check (a real prefill).", action="store_true",
           group="size"),
    Option("max-batch", ("--max-batch",), "Answer the largest batch that fits the free memory at --seq-len L "
           "(one value).", action="store_true", group="size"),
    Option("max-seq-len", ("--max-seq-len",), "Answer the largest length that fits the free memory at --batch B "
           "(one value, default 1).", action="store_true", group="size"),
    # latency (and the request shape the profile shares)
    Option("tokenizer", ("--tokenizer",), "Tokenizer for --prompt: in a magic a name in the notebook or a quoted "
           "local folder; in the command a folder or hub id (default: the model's).", metavar="TOK", group="latency"),
    Option("prompt", ("--prompt",), "A real prompt (needs a tokenizer); the prompt length then follows the text.",
           metavar="TEXT", group="latency"),
    Option("batch", ("--batch",), f"Sequences per batch (default {_B}).", whole(1, "8"), _B, metavar="B",
           group="latency"),
    Option("prompt-len", ("--prompt-len",), f"Prompt tokens (default {_P}).", whole(1, "128"), _P, metavar="P",
           elana=("--prompt_len",), group="latency"),
    Option("gen-len", ("--gen-len",), f"Generated tokens, EOS ignored (default {_G}).", whole(1, "32"), _G,
           metavar="G", elana=("--gen_len",), group="latency"),
    # latency takes lists: several values measure every cell of the grid
    Option("grid-batch", ("--batch",), f"Sequences per batch (default {_B}); several values: a grid, every cell "
           "measured.", whole(1, "1 8"), [_B], nargs="+", metavar="B", group="latency", dest="batch"),
    Option("grid-prompt-len", ("--prompt-len",), f"Prompt tokens (default {_P}); several values: a grid.",
           whole(1, "128 512"), [_P], nargs="+", metavar="P", elana=("--prompt_len",), group="latency",
           cpu_default=[32], dest="prompt_len"),
    Option("grid-gen-len", ("--gen-len",), f"Generated tokens, EOS ignored (default {_G}); several values: a grid.",
           whole(1, "32 128"), [_G], nargs="+", metavar="G", elana=("--gen_len",), group="latency",
           cpu_default=[8], dest="gen_len"),
    Option("energy", ("--energy",), "Measure energy per phase (default: on when a sensor exists: NVIDIA GPUs "
           "through NVML, AMD GPUs through amdsmi, Jetson rails through jtop or sysfs, CPU RAPL).",
           action="store_const", const=True, dest="energy", group="latency"),
    Option("no-energy", ("--no-energy",), "Do not measure energy.", action="store_const", const=False,
           dest="energy", group="latency"),
    Option("cuda-graph", ("--cuda-graph",), "Decode with a static cache and one step in a CUDA graph (the CUDA "
           "default).", action="store_const", const=True, dest="cuda_graph", elana=("--cache_graph",),
           group="latency"),
    Option("no-cuda-graph", ("--no-cuda-graph",), "Decode eagerly with a dynamic cache.", action="store_const",
           const=False, dest="cuda_graph", group="latency"),
    Option("no-compile", ("--no-compile",), "Capture the eager decode step in the CUDA graph instead of an "
           "Inductor-compiled one (the default compiles once per model and shape, tens of seconds).",
           action="store_const", const=False, dest="compile", group="latency"),
    Option("prefill", ("--prefill",), "Prefill engine: auto (on CUDA the prefill of the fixed shape compiled like "
           "decode and captured in a CUDA graph, checked against eager; eager on CPU) or eager (plain transformers' "
           f"prefill) (default {defaults.PREFILL}).", default=defaults.PREFILL, choices=defaults.PREFILL_ENGINES,
           group="latency"),
    Option("warmup", ("--warmup",), f"Warm-up runs per phase (default {defaults.WARMUP}).", whole(0, "2"),
           defaults.WARMUP, metavar="N", group="latency", cpu_default=1),
    Option("repeats", ("--repeats",), f"Minimum measured runs per phase (default {defaults.REPEATS}).",
           whole(1, "100"), defaults.REPEATS, metavar="N", group="latency", cpu_default=3),
    Option("min-time", ("--min-time",), f"Minimum seconds per phase, unless the median's 95% CI is within 1% "
           f"sooner (default {defaults.MIN_TIME_S:g}).", seconds(False, "1"), defaults.MIN_TIME_S, metavar="S",
           group="latency", cpu_default=0.2),
    Option("peak-bw", ("--peak-bw",), "Peak memory bandwidth for MBU, e.g. 3.35TB/s (default: the device's, "
           "from a table).", rate("3.35e12 or 3.35TB/s"), metavar="BYTES/S", group="latency"),
    Option("peak-flops", ("--peak-flops",), "Peak FLOP/s for MFU, e.g. 989T (default: the device's, from a "
           "table).", rate("989e12 or 989T"), metavar="FLOP/S", group="latency"),
    Option("usd-per-gpu-hour", ("--usd-per-gpu-hour",), "Price of one GPU-hour (on a CPU: of the machine) for "
           "the cost per 1M tokens and per request (default: $ELANA_USD_PER_GPU_HOUR, else no cost shown).",
           price("2.5", "$ per GPU-hour"), metavar="USD", group="latency"),
    Option("usd-per-kwh", ("--usd-per-kwh",), "Electricity price for the energy's cost per 1M tokens and per "
           "request (default: $ELANA_USD_PER_KWH, else none shown).", price("0.15", "$ per kWh"), metavar="USD",
           group="latency"),
    Option("gco2-per-kwh", ("--gco2-per-kwh",), "Grid carbon intensity for CO2e per 1M tokens and per request "
           "(default: $ELANA_GCO2_PER_KWH, else none shown).", price("400", "gCO2e per kWh"), metavar="G",
           group="latency"),
    Option("project", ("--project",), "Project TPOT, TTFT, tokens/s and TTLT to these GPUs of the peaks table, "
           'e.g. --project H100 L4 "Jetson AGX Orin" (quote a name with spaces): the measured MBU/MFU carried to each '
           "card's peaks, with the range from the fastest and slowest measured case and the memory fit; projections, "
           "not measurements.", card_name, nargs="+", metavar="GPU", group="latency"),
    Option("cooldown", ("--cooldown",), "Before each paired round and grid cell after the first: sleep S seconds, "
           "or auto: wait until the GPU's power is within 10% (or 15 W, the larger) and its temperature within 3 C "
           "of the idle read at the start, polled every 0.25 s, at most 60 s (no GPU: no wait). The temperature and "
           "power each round started at are recorded (default: no wait).", cooldown, metavar="S|auto",
           group="latency"),
    Option("ngpus", ("--ngpus",), "Replicas, one per GPU, started through torchrun; the batch is split across "
           f"them (default {defaults.NGPUS}).", whole(1, "2"), defaults.NGPUS, metavar="N", group="latency"),
    # energy
    Option("devices", ("--devices",), "CUDA-visible GPU indices to measure (default: every visible GPU).",
           device_indices, metavar="0,1", group="energy"),
    Option("no-plot", ("--no-plot",), "Show the figures without the power plot.", action="store_true",
           group="energy"),
    Option("energy-min-time", ("--min-time",), "Line form: repeat the statement until the window lasts S "
           f"seconds (default {defaults.ENERGY_MIN_TIME_S:g}).", seconds(True, "2"), defaults.ENERGY_MIN_TIME_S,
           metavar="S", dest="min_time", group="energy"),
    # profile
    Option("phase", ("--phase",), "What to profile: prefills (ttft), decode steps (tpot, the default) or whole "
           "requests (ttlt).", default=defaults.PROFILE_PHASE, choices=("ttft", "tpot", "ttlt"),
           elana=("--profile-phase",), group="profile"),
    Option("steps", ("--steps",), f"Prefills (ttft, default {_STEPS['ttft']}), decode steps (tpot, default "
           f"{_STEPS['tpot']}) or requests (ttlt, default {_STEPS['ttlt']}) captured.", whole(1, "16"),
           metavar="N", group="profile"),
    Option("out", ("--out",), "Folder for the trace (default elana_traces/<label>/).", metavar="DIR",
           group="profile"),
    Option("gzip", ("--gzip",), "Write .json.gz (Perfetto opens it as well).", action="store_true", group="profile"),
    Option("top", ("--top",), f"Rows in the kernel and op tables (default {defaults.PROFILE_TOP}).", whole(1, "20"),
           defaults.PROFILE_TOP, metavar="N", group="profile"),
    # loading
    Option("trust-remote-code", ("--trust-remote-code",), "Run a model folder's own Python code (an auto_map in its "
           "config.json) when loading it; off by default.", action="store_true", group="output"),
    # every magic; the command's output
    Option("rounds", ("--rounds",), f"Paired A/B (two or more models): alternating rounds, --repeats and "
           f"--min-time per model spread over them (default {defaults.PAIRED_ROUNDS}, at most "
           f"{defaults.MAX_PAIRED_ROUNDS}).", whole(1, "6", defaults.MAX_PAIRED_ROUNDS),
           defaults.PAIRED_ROUNDS, metavar="N", group="latency"),
    # history and comparison
    Option("clear", ("--clear",), "Forget every report in the history.", action="store_true"),
    Option("save", ("--save",), "Write the history to FILE (JSON lines, one report per line).", metavar="FILE"),
    Option("load", ("--load",), "Append the reports saved in FILE (JSON lines).", metavar="FILE"),
    Option("items", (), "Two or more reports: history indices (3, #3, -1), labels, notebook variables or saved "
           "files. The first is the baseline.", dest="items", nargs="*"),
    Option("label", ("--label",), "A name for this measurement, shown on the report (a trace file's name keeps "
           "letters, digits, '.', '_', '-'); the command's default: the model id.", metavar="NAME",
           elana=("--model_name",), group="output"),
    Option("output", ("-o", "--output"), "Return the report object.", action="store_true", group="output"),
    Option("var", ("-v", "--var"), "Store the report in the notebook variable VAR.", python_name, metavar="VAR",
           group="output"),
    Option("quiet", ("-q", "--quiet"), "Print nothing.", action="store_true", group="output"),
    Option("json", ("--json",), "Write one JSON object to FILE (to stdout with no FILE, or -) instead of tables.",
           nargs="?", const="-", metavar="FILE", group="output"),
    Option("csv", ("--csv",), "Write the reports' rows to FILE as CSV (needs pandas).", metavar="FILE",
           group="output"),
    Option("device-map", ("--device-map",), "Passed to from_pretrained for a folder or hub id, e.g. auto or "
           "cuda:0 (default: loaded on the CPU, then moved to the GPU when one exists).", metavar="MAP",
           elana=("--device_map",), group="output"),
    Option("log-level", ("--log-level",), f"Logging level: {', '.join(LOG_LEVELS)} (default WARNING); DEBUG "
           "also shows the traceback of a failure.", level, "WARNING", metavar="LEVEL", elana=("--log_level",),
           group="output"),
]}


@dataclass(frozen=True)
class Uses:
    """The options one magic (or the command) takes, in the order its help lists them.

    ``unset``: options whose parsed default is None here, because the caller tells "not given" from
    "given" (``%%elana_profile`` refuses phase options; the command picks CPU-sized defaults)."""

    keys: tuple[str, ...]
    unset: tuple[str, ...] = field(default=())

    def options(self) -> list[Option]:
        return [OPTIONS[k] for k in self.keys]


_OUT = ("output", "var", "quiet")
_REQUEST = ("batch", "prompt-len", "gen-len")
_GRID = ("grid-batch", "grid-prompt-len", "grid-gen-len")

MAGICS: dict[str, Uses] = {
    "elana_size": Uses(("size-model", "size-batch", "seq-len", "cache-dtype", "gib", "no-check", "trust-remote-code",
                        "max-batch", "max-seq-len") + _OUT, unset=("size-batch", "seq-len")),
    "elana_latency": Uses(("model", "tokenizer", "prompt", "ttft", "tpot", "ttlt") + _GRID + (
        "energy", "no-energy", "cuda-graph", "no-cuda-graph", "no-compile", "prefill", "warmup", "repeats", "min-time",
        "peak-bw", "peak-flops", "usd-per-gpu-hour", "usd-per-kwh", "gco2-per-kwh", "project", "label",
        "trust-remote-code", "rounds", "cooldown") + _OUT),
    "elana_history": Uses(("clear", "save", "load") + _OUT),
    "elana_compare": Uses(("items",) + _OUT),
    "elana_energy": Uses(("devices", "label", "no-plot", "energy-min-time") + _OUT),
    "elana_profile": Uses(("profile-model", "phase") + _REQUEST + ("steps", "cuda-graph", "no-cuda-graph", "out",
                                                                  "label", "gzip", "top", "trust-remote-code")
                          + _OUT,
                          unset=("phase",) + _REQUEST),
}

_CPU_SIZED = tuple(k for k, o in OPTIONS.items() if o.cpu_default is not None)

COMMAND = Uses(("command-model", "size", "ttft", "tpot", "ttlt", "torch-profile",
                "size-batch", "seq-len", "cache-dtype", "gib", "no-check",
                "tokenizer", "prompt", "grid-prompt-len", "grid-gen-len", "energy", "no-energy", "cuda-graph",
                "no-cuda-graph", "no-compile", "prefill", "warmup", "repeats", "min-time", "peak-bw", "peak-flops",
                "usd-per-gpu-hour", "usd-per-kwh", "gco2-per-kwh", "project", "cooldown", "ngpus",
                "phase", "steps", "out", "gzip", "top",
                "label", "json", "csv", "device-map", "trust-remote-code", "log-level"),
               unset=_CPU_SIZED)

COMMAND_GROUPS = {
    "phases": "phases (none given: every phase)",
    "size": "size (--size)",
    "latency": "latency (--ttft --tpot --ttlt; several --batch, --prompt-len or --gen-len values: a grid)",
    "profile": "profile (--torch-profile)",
    "output": "naming, output and loading",
}


# -- consumers -----------------------------------------------------------------------------------


def magic_options(name: str) -> Callable[[Callable], Callable]:
    """Decorate the magic ``name`` with IPython's ``argument`` for each of its options (under ``magic_arguments``).

    A bad value (``OptionError`` from a type function) becomes IPython's one-line ``UsageError``."""
    from IPython.core.error import UsageError
    from IPython.core.magic_arguments import argument

    uses = MAGICS[name]
    decorators = [argument(*o.names(command=False), **o.kwargs(unset=o.key in uses.unset)) for o in uses.options()]

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)  # keeps the attributes the magic decorators below set
        def magic(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # noqa: F841 - not one of the user's frames
            try:
                return func(*args, **kwargs)
            except OptionError as exc:
                raise UsageError(str(exc)) from None

        for deco in reversed(decorators):  # the last applied is listed first
            magic = deco(magic)
        return magic

    return decorate


def magic_flags(name: str) -> tuple[set[str], set[str]]:
    """(flags that take a value, flags that don't) of the magic ``name``: for splitting a statement off options."""
    valued, bare = set(), set()
    for o in MAGICS[name].options():
        if o.positional:
            continue
        takes_value = o.action is None
        (valued if takes_value else bare).update(o.flags)
    return valued, bare


def add_command_options(parser: argparse.ArgumentParser) -> None:
    """The command's options, in groups, with ELANA's spellings beside ours."""
    groups: dict[str, Any] = {}
    for o in COMMAND.options():
        target = parser if not o.group else groups.setdefault(
            o.group, parser.add_argument_group(COMMAND_GROUPS[o.group]))
        target.add_argument(*o.names(command=True), **o.kwargs(unset=o.key in COMMAND.unset, command=True))


def cpu_sized(args: argparse.Namespace, gpu: bool) -> list[Option]:
    """Fill the command's unset CPU-sized options: the API's defaults on a GPU, smaller ones without.

    Returns the options that took a CPU-sized default, for the note that says so."""
    changed = []
    for o in COMMAND.options():
        if o.key not in COMMAND.unset:
            continue
        dest = o.dest or o.key.replace("-", "_")
        if getattr(args, dest) is None:
            use_cpu = not gpu and o.cpu_default is not None
            setattr(args, dest, _copy(o.cpu_default if use_cpu else o.default))
            if use_cpu:
                changed.append(o)
    return changed


def flags_text(options: list[Option], cpu: bool) -> str:
    """'--prompt-len 32 --gen-len 8' (CPU-sized) or '--prompt_len 512 --gen_len 128' (ELANA's spellings)."""
    if cpu:
        return " ".join(f"{o.flag} {_fmt(o.cpu_default)}" for o in options)
    return " ".join(f"{(o.elana or o.flags)[0]} {_fmt(o.default)}" for o in options)


ELANA_DEFAULTS = "--batch_size 1 --prompt_len 1024 --gen_len 128 --repeats 100"  # ELANA's cli.py, for the notes


def command_reference() -> str:
    """The README's table of the command's flags, generated from the spec."""
    lines = ["| flag | ELANA's spelling | what it does |", "|---|---|---|"]
    for o in COMMAND.options():
        if o.positional:
            name = "`MODEL`"
        else:
            name = ", ".join(f"`{f}{_metavar(o)}`" for f in o.flags)
        elana = ", ".join(f"`{f}`" for f in o.elana)
        text = o.command_help().replace("%%", "%")
        lines.append(f"| {name} | {elana} | {text.replace('|', '/')} |")
    return "\n".join(lines)


def _metavar(o: Option) -> str:
    if o.action is not None:
        return ""
    meta = o.metavar or o.dest or o.key.upper()
    if o.nargs == "+":
        return f" {meta} ..."
    if o.nargs == "?":
        return f" [{meta}]"
    return f" {meta}"


README_BEGIN = "<!-- command options: generated by `python -m elana_magic.core.options` -->"
README_END = "<!-- end of command options -->"


if __name__ == "__main__":  # pragma: no cover
    print(README_BEGIN)
    print(command_reference())
    print(README_END)
