"""The ``elana-magic`` shell command (also ``python -m elana_magic``).

    elana-magic                               # the embedded default model, every phase
    elana-magic random:llama-3.1-8b --size --batch 1 8 --seq-len 1024 8192
    elana-magic random:llama-3.2-1b --ttft --tpot --prompt-len 512 --gen-len 128
    elana-magic /models/Llama-3.2-1B --tpot --torch-profile --out traces/

Each measurement is a ``Phase``: its flag, its own options, and a function that takes the model
target, the parsed options and the names of the chosen phases of its group, and returns a report.
Phases of one group (``--ttft --tpot --ttlt``) run together in one measurement. To add one, write
the function and append a ``Phase`` to ``PHASES``; with no phase flag, all of them run.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .core.report import json_safe


class ModelTarget:
    """What the user named (nothing = the embedded default), materialized only when a phase needs it."""

    def __init__(self, spec: str | None, trust_remote_code: bool = False):
        self.spec = spec
        self.trust_remote_code = trust_remote_code
        self._loaded = None

    @property
    def label(self) -> str:
        if self._loaded is not None:
            return self._loaded.label
        return self.spec or "embedded default model"

    @property
    def loaded(self):
        """A ``models.LoadedModel`` (model, tokenizer, label), loaded once."""
        if self._loaded is None:
            self._loaded = load_model(self.spec, self.trust_remote_code)
        return self._loaded

    @property
    def model(self):
        return self.loaded.model

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None


def load_model(spec: str | None, trust_remote_code: bool = False):
    """The embedded default (None), a random preset (``random:NAME``) or a local folder / cached hub id."""
    from .models import default_model, load_model as load_named

    if spec is None:
        return default_model()
    return load_named(spec, trust_remote_code=trust_remote_code)


@dataclass
class Phase:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[ModelTarget, argparse.Namespace, list[str]], Any]
    group: str = ""  # phases of one group run in one measurement; "" = the phase's own name

    @property
    def key(self) -> str:
        return self.group or self.name


# --- size -------------------------------------------------------------------------------------


def _size_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("size")
    group.add_argument("--batch", type=int, nargs="+", default=[1], metavar="B", help="batch sizes (default 1)")
    group.add_argument("--seq-len", type=int, nargs="+", default=[1024, 2048], metavar="L",
                       help="context lengths the cache holds (default 1024 2048)")
    group.add_argument("--cache-dtype", default=None, metavar="DT", help="KV cache dtype (default: the model's)")
    group.add_argument("--gib", action="store_true", help="binary units (GiB) instead of SI (GB)")
    group.add_argument("--no-check", action="store_true", help="skip the measured cross-check (a real prefill)")


def run_size(target: ModelTarget, args: argparse.Namespace, names: list[str]):
    from .size import measure_size

    # A folder, hub id or preset is sized from its config on the meta device, unless another phase
    # has already loaded the weights.
    what = target.model if (target.spec is None or target.is_loaded) else target.spec
    report = measure_size(what, batch=args.batch, seq_len=args.seq_len, cache_dtype=args.cache_dtype,
                          binary=args.gib, cross_check=not args.no_check,
                          label=target.label if target.is_loaded else None,
                          trust_remote_code=target.trust_remote_code)
    return report


# --- latency (ttft, tpot, ttlt) and energy ----------------------------------------------------


def _latency_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("latency (--ttft --tpot --ttlt; the first --batch value is used)")
    group.add_argument("--prompt-len", type=int, default=512, metavar="P", help="prompt tokens (default 512)")
    group.add_argument("--gen-len", type=int, default=128, metavar="G", help="generated tokens (default 128)")
    group.add_argument("--prompt", default=None, help="a real prompt (needs the model's tokenizer)")
    group.add_argument("--energy", dest="energy", action="store_true", default=None,
                       help="measure energy per phase (default: when a sensor exists)")
    group.add_argument("--no-energy", dest="energy", action="store_false")
    group.add_argument("--cuda-graph", "--cache_graph", dest="cuda_graph", action="store_true", default=None,
                       help="decode with a CUDA graph (default on CUDA)")
    group.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false")
    group.add_argument("--warmup", type=int, default=None, metavar="N", help="warm-up runs per phase")
    group.add_argument("--repeats", type=int, default=None, metavar="N", help="minimum timed runs per phase")
    group.add_argument("--min-time", type=float, default=None, metavar="S", help="minimum seconds per phase")


def run_latency(target: ModelTarget, args: argparse.Namespace, names: list[str]):
    from .latency import measure_latency

    model = target.model
    device = next(model.parameters()).device
    if device.type == "cpu" and _cuda_available():
        model.to("cuda")
    options = {k: getattr(args, k) for k in ("warmup", "repeats", "min_time") if getattr(args, k) is not None}
    return measure_latency(model, tokenizer=target.loaded.tokenizer, phases=names, batch=args.batch[0],
                           prompt_len=args.prompt_len, gen_len=args.gen_len, energy=args.energy,
                           cuda_graph=args.cuda_graph, prompt=args.prompt, label=target.label, **options)


# --- kernel profile ----------------------------------------------------------------------------


def _profile_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("profile (--torch-profile)")
    group.add_argument("--profile-phase", choices=("ttft", "tpot", "ttlt"), default="tpot",
                       help="the phase to trace (default tpot)")
    group.add_argument("--out", default=None, metavar="DIR", help="trace folder (default elana_traces/<label>/)")


def run_profile(target: ModelTarget, args: argparse.Namespace, names: list[str]):
    from .profile import profile_phase

    return profile_phase(target.model, args.profile_phase, batch=args.batch[0], prompt_len=args.prompt_len,
                         gen_len=args.gen_len, out=args.out, cuda_graph=args.cuda_graph)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


PHASES: list[Phase] = [
    Phase("size", "parameters, buffers, KV cache and SSM state", _size_arguments, run_size),
    Phase("ttft", "time to first token (prefill) and J/prompt", _latency_arguments, run_latency, "latency"),
    Phase("tpot", "time per output token (decode) and J/token", lambda p: None, run_latency, "latency"),
    Phase("ttlt", "time to last token (a whole request) and J/request", lambda p: None, run_latency, "latency"),
    Phase("torch-profile", "kernel trace for Perfetto and kernel tables", _profile_arguments, run_profile),
]

def _expected_errors() -> tuple[type[BaseException], ...]:
    """The one-line errors of the measurements (bad input, out of memory)."""
    from .latency.session import GenerationInputError, GenerationOutOfMemory
    from .models import ModelLoadError
    from .profile import ProfileError
    from .size import SizeError

    return (SizeError, GenerationInputError, GenerationOutOfMemory, ProfileError, ModelLoadError)


class _Parser(argparse.ArgumentParser):
    """Bad input is one line on stderr and exit 2 (argparse's default also prints the usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# --- the command ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="elana-magic",
        description="Measure what an LLM costs. With no phase flag, every phase runs.",
    )
    parser.add_argument("model", nargs="?", default=None,
                        help="random:PRESET, a local folder or a hub id (default: the embedded SmolLM2-135M)")
    for phase in PHASES:
        flags = [f"--{phase.name}"] + ([f"--{phase.name.replace('-', '_')}"] if "-" in phase.name else [])
        parser.add_argument(*flags, dest=_dest(phase), action="store_true", help=phase.help)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the model's own code (a config.json auto_map) when loading it; off by default")
    for phase in PHASES:
        phase.add_arguments(parser)
    return parser


def _flat(text: str) -> str:
    return " ".join(text.split())


def _dest(phase: Phase) -> str:
    return "phase_" + phase.name.replace("-", "_")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch", "seq_len", "prompt_len", "gen_len"):
        values = getattr(args, name, None)
        values = values if isinstance(values, list) else [values]
        if any(v is not None and v <= 0 for v in values):
            parser.error(f"--{name.replace('_', '-')} must be positive integers")
    chosen = [p for p in PHASES if getattr(args, _dest(p))] or PHASES
    groups: dict[str, list[Phase]] = {}
    for phase in chosen:
        groups.setdefault(phase.key, []).append(phase)
    target = ModelTarget(args.model, trust_remote_code=args.trust_remote_code)
    results: dict[str, Any] = {}
    for key, phases in groups.items():
        try:
            report = phases[0].run(target, args, [p.name for p in phases])
        except _expected_errors() as exc:
            parser.exit(2, f"elana-magic: {_flat(str(exc))}\n")
        except KeyboardInterrupt:
            parser.exit(130, "elana-magic: interrupted\n")
        except Exception as exc:  # noqa: BLE001 - a measurement that failed: one line, exit 1
            from .models import one_line

            parser.exit(1, f"elana-magic: {key} failed: {_flat(one_line(exc))}\n")
        results[key] = report
        if not args.json:
            print(f"== {key}: {target.label}")
            print(report.to_text())
            print()
    if args.json:
        print(json.dumps({"model": target.label, **{k: json_safe(r.to_dict()) for k, r in results.items()}}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
