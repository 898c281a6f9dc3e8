"""The ``elana-magic`` shell command (also ``python -m elana_magic``).

    elana-magic                               # the embedded default model, every phase
    elana-magic random:llama-3.1-8b --size --batch 1 8 --seq-len 1024 8192
    elana-magic /models/Llama-3.2-1B --ttft --tpot --ttlt --energy --cache_graph \\
                --batch_size 1 --prompt_len 512 --gen_len 128 --repeats 100      # ELANA's flags
    elana-magic /models/Llama-3.2-1B --tpot --torch-profile --out traces/ --json run.json --csv run.csv
    elana-magic DIR --batch 1 8 --prompt-len 128 512 --json grid.json --csv grid.csv   # a grid: a row per cell
    elana-magic DIR --tpot --ttft --project H100 L4 "Jetson AGX Orin"   # projected to other GPUs (not measured)

The options come from the one option spec (``core/options.py``), which the magics share; ELANA's
spellings are accepted beside ours. Without a GPU, the request shape and the repetition rule take
CPU-sized defaults unless given, and the output says so.

Each measurement is a ``Phase``: its flag (an option of the spec) and a function that takes the
model target, the parsed options and the names of the chosen phases of its group, and returns a
report. Phases of one group (``--ttft --tpot --ttlt``) run together in one measurement.

Exit status: 0 success; 2 bad input (one line on stderr: a bad option, a model that can't be
loaded); 1 a measurement that failed (one line; the traceback too with ``--log_level DEBUG``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from .core.errors import ElanaError, one_line
from .core.options import (ELANA_DEFAULTS, OPTIONS, OptionError, add_command_options, cpu_sized,
                           flags_text)
from .core.report import json_safe
from .loading import load_model, load_tokenizer, single_device

PROG = "elana-magic"


class CommandInputError(ElanaError):
    """Bad input found after parsing (a model that can't be loaded, a missing tokenizer): exit 2."""


class ModelTarget:
    """What the user named (nothing = the embedded default), materialized only when a phase needs it."""

    def __init__(self, spec: str | None, device_map: str | None = None, tokenizer: str | None = None,
                 trust_remote_code: bool = False):
        self.spec = spec
        self.device_map = device_map
        self.trust_remote_code = trust_remote_code
        self.tokenizer_spec = tokenizer
        self._loaded = None
        self._tokenizer = None

    @property
    def label(self) -> str:
        if self._loaded is not None:
            return self._loaded.label
        return self.spec or "embedded default model"

    @property
    def loaded(self):
        """A ``models.LoadedModel`` (model, tokenizer, label), loaded once, on the GPU when one exists."""
        if self._loaded is None:
            self._loaded = load_model(self.spec, download=True, trust_remote_code=self.trust_remote_code,
                                      device_map=self.device_map)
            if self.device_map is None and _cuda_available():
                self._loaded.model.to("cuda")
        return self._loaded

    @property
    def model(self):
        return self.loaded.model

    @property
    def tokenizer(self):
        if self.tokenizer_spec is None:
            return self.loaded.tokenizer
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_spec, download=True,
                                             trust_remote_code=self.trust_remote_code)
        return self._tokenizer

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None


@dataclass
class Phase:
    name: str  # the key of its flag in the option spec
    run: Callable[[ModelTarget, argparse.Namespace, list[str]], Any]
    group: str = ""  # phases of one group run in one measurement; "" = the phase's own name

    @property
    def key(self) -> str:
        return self.group or self.name

    @property
    def dest(self) -> str:
        return OPTIONS[self.name].dest or self.name


def run_size(target: ModelTarget, args: argparse.Namespace, names: list[str]):
    from .size import measure_size

    # A folder, hub id or preset is sized from its config on the meta device, unless another phase
    # has already loaded the weights.
    what = target.model if (target.spec is None or target.is_loaded) else target.spec
    label = args.label or (target.label if target.is_loaded else None)
    return measure_size(what, batch=args.batch, seq_len=args.seq_len, cache_dtype=args.cache_dtype,
                        binary=args.gib, cross_check=not args.no_check, label=label,
                        trust_remote_code=target.trust_remote_code)


def run_latency(target: ModelTarget, args: argparse.Namespace, names: list[str]):
    from .latency import LatencySettings, measure_latency

    if args.prompt is not None and any(len(v) > 1 for v in (args.batch, args.prompt_len, args.gen_len)):
        raise CommandInputError("--prompt sets one prompt length: give one --prompt-len and --batch value with it")
    tokenizer = target.tokenizer if args.prompt is not None else None
    if args.prompt is not None and tokenizer is None:
        raise CommandInputError("--prompt needs a tokenizer: the model has none, give --tokenizer FOLDER_OR_HUB_ID")
    settings = LatencySettings(
        phases=names, batch=_one_or_all(args.batch), prompt_len=_one_or_all(args.prompt_len),
        gen_len=_one_or_all(args.gen_len), energy=args.energy, cuda_graph=args.cuda_graph, compile=args.compile,
        prefill=args.prefill, warmup=args.warmup, repeats=args.repeats, min_time=args.min_time, ngpus=args.ngpus,
        peak_bw=args.peak_bw, peak_flops=args.peak_flops, prompt=args.prompt, label=args.label or target.label,
        usd_per_gpu_hour=args.usd_per_gpu_hour, usd_per_kwh=args.usd_per_kwh, gco2_per_kwh=args.gco2_per_kwh,
        cooldown=args.cooldown)
    if args.project:
        _check_projection(target, args)
    report = measure_latency(target.model, tokenizer, settings=settings)
    if args.project:
        from .latency.projection import attach_projection

        attach_projection(report, args.project)
    return report


def _check_projection(target: ModelTarget, args: argparse.Namespace) -> None:
    """--project: known GPU names, one configuration on one GPU, a peak for the measured efficiency."""
    from .latency.projection import ProjectionError, check_projectable, resolve_targets

    if any(len(v) > 1 for v in (args.batch, args.prompt_len, args.gen_len)) or args.ngpus > 1:
        raise CommandInputError("--project takes one configuration on one GPU: one --batch, --prompt-len and "
                                "--gen-len value, --ngpus 1")
    try:
        resolve_targets(args.project)
        check_projectable(target.model, args.peak_bw, args.peak_flops)
    except ProjectionError as exc:
        raise CommandInputError(str(exc)) from None


def _one_or_all(values: list[int]):
    """One value as itself (a LatencyReport), several as a list (a LatencyGridReport, one row per cell)."""
    return values[0] if len(values) == 1 else values


def run_profile(target: ModelTarget, args: argparse.Namespace, names: list[str]):
    from .profile import profile_phase

    batch = max(1, args.batch[0] // args.ngpus)  # with --ngpus (every phase): rank 0's share, as the note says
    return profile_phase(target.model, args.phase, batch=batch, prompt_len=args.prompt_len[0],
                         gen_len=args.gen_len[0], steps=args.steps, out=args.out, label=args.label,
                         gzip=args.gzip, cuda_graph=args.cuda_graph, top=args.top)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


PHASES: list[Phase] = [
    Phase("size", run_size),
    Phase("ttft", run_latency, "latency"),
    Phase("tpot", run_latency, "latency"),
    Phase("ttlt", run_latency, "latency"),
    Phase("torch-profile", run_profile),
]
_LATENCY = {"ttft", "tpot", "ttlt"}
_USED_BY = {"seq-len": {"size"}, "grid-prompt-len": _LATENCY | {"torch-profile"},
            "grid-gen-len": _LATENCY | {"torch-profile"},
            "warmup": _LATENCY, "repeats": _LATENCY, "min-time": _LATENCY}  # the phases a CPU-sized option changes


# --- the command ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr, exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Measure what an LLM costs: size, TTFT/TPOT/TTLT with energy, kernel profiles. "
                    "With no phase flag, every phase runs. ELANA's flags are accepted beside ours.",
        epilog=f"Without a GPU, the options whose help says 'Without a GPU' take those CPU-sized defaults "
               f"unless given; "
               f"ELANA's own defaults are {ELANA_DEFAULTS}. Exit status: 0 done, 2 bad input, 1 a measurement "
               "failed (--log_level DEBUG shows its traceback).",
    )
    add_command_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except OptionError as exc:
        parser.exit(2, f"{PROG}: {exc}\n")
    logging.basicConfig(level=args.log_level, format=f"{PROG}: %(levelname)s %(name)s: %(message)s")
    debug = args.log_level == "DEBUG"
    try:
        return _run(args)
    except ElanaError as exc:  # bad input (exit 2), or a measurement that could not go on (exit 1)
        _fail(exc.exit_status, str(exc) if exc.exit_status == 2 else _failed(exc, debug), exc, debug)
    except KeyboardInterrupt:
        parser.exit(130, f"{PROG}: interrupted\n")
    except Exception as exc:  # noqa: BLE001 - one line for the user; DEBUG shows the rest
        _fail(1, _failed(exc, debug), exc, debug)
    return 0


def _failed(exc: BaseException, debug: bool) -> str:
    return f"the measurement failed: {one_line(exc)}" + ("" if debug else " (--log_level DEBUG shows the traceback)")


def _fail(code: int, message: str, exc: BaseException, debug: bool):
    if debug:
        traceback.print_exception(exc)
    sys.stderr.write(f"{PROG}: {' '.join(message.split())}\n")  # one line, whatever the message held
    raise SystemExit(code)


def _run(args: argparse.Namespace) -> int:
    _check_outputs(args)
    if args.project:  # the GPU names, before any phase runs
        from .latency.projection import ProjectionError, resolve_targets

        try:
            resolve_targets(args.project)
        except ProjectionError as exc:
            raise CommandInputError(str(exc)) from None
    given = [p for p in PHASES if getattr(args, p.dest)]
    chosen = given or PHASES
    names = {p.name for p in chosen}
    if args.ngpus > 1 and "torch-profile" in {p.name for p in given}:
        raise CommandInputError(f"--torch-profile profiles one process, not {args.ngpus} replicas: drop --ngpus "
                                f"{args.ngpus}, or run --ttft --tpot --ttlt with it")
    if args.seq_len is None and args.prompt_len is not None:
        args.seq_len = list(args.prompt_len)  # ELANA sizes the cache at the prompt length given
    if args.model is None or args.model.startswith("random:"):
        single_device(args.device_map, args.model)  # refused now, not after the first phase
    gpu = _cuda_available()
    sized = [o for o in cpu_sized(args, gpu) if names & _USED_BY[o.key]]
    to_stdout = args.json == "-"
    if sized:
        print(f"note: no GPU, so CPU-sized defaults: {flags_text(sized, cpu=True)}; for the GPU-sized run "
              f"give {flags_text(sized, cpu=False)} (ELANA's own defaults: {ELANA_DEFAULTS})",
              file=sys.stderr if to_stdout else sys.stdout)
    busy = None if gpu else _busy_cpu_note()
    if busy:
        print(busy, file=sys.stderr if to_stdout else sys.stdout)
    groups: dict[str, list[Phase]] = {}
    for phase in chosen:
        groups.setdefault(phase.key, []).append(phase)
    target = ModelTarget(args.model, args.device_map, args.tokenizer, args.trust_remote_code)
    results: dict[str, Any] = {}
    for key, phases in groups.items():
        if key == "torch-profile" and args.ngpus > 1:
            print(f"note: --torch-profile profiles one process: rank 0's share of the batch ({args.batch[0]} / "
                  f"{args.ngpus}) on one device", file=sys.stderr if to_stdout else sys.stdout)
        report = phases[0].run(target, args, [p.name for p in phases])
        results[key] = report
        if not to_stdout:
            print(f"== {key}: {target.label}")
            print(report.to_text())
            print()
    if args.json is not None:
        data = {"model": target.label, **{k: json_safe(r.to_dict()) for k, r in results.items()}}
        _write(args.json, json.dumps(data, indent=2) + "\n")
    if args.csv is not None:
        import pandas as pd

        frames = []
        for key, report in results.items():
            frame = report.to_dataframe()
            frame.insert(0, "measurement", key)
            if "model" not in frame:
                frame.insert(0, "model", target.label)
            frames.append(frame)
        _write(args.csv, pd.concat(frames, ignore_index=True).to_csv(index=False))
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output the run could not write."""
    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path in (None, "-"):
            continue
        full = os.path.abspath(os.path.expanduser(path))
        if os.path.isdir(full) or not os.path.isdir(os.path.dirname(full)):
            raise CommandInputError(f"{flag} {path!r}: give a file in an existing folder")
        existed = os.path.exists(full)
        try:
            with open(full, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise CommandInputError(f"{flag} {path!r} cannot be written ({exc.strerror or exc}): give a file in a "
                                    "folder you can write") from None
        if not existed:
            os.remove(full)  # made only to try: the run writes it at the end
    if args.csv is not None:
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise CommandInputError("--csv needs pandas: pip install 'elana-magic[export]'") from None


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    with open(os.path.expanduser(path), "w", encoding="utf-8") as f:
        f.write(text)


def _busy_cpu_note() -> str | None:
    """A hint when other work keeps the cores busy: torch's CPU threads then wait on each other."""
    import torch

    threads, cores = torch.get_num_threads(), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if threads < 2 or load < 1.5 * cores:
        return None
    return (f"note: the machine is busy (load {load:.1f} on {cores} cores): torch's {threads} CPU threads wait on "
            "each other and every figure comes out slower; OMP_NUM_THREADS=1 runs faster on a busy machine")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
