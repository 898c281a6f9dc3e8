"""The ``elana-magic`` shell command (also ``python -m elana_magic``).

    elana-magic                               # the embedded default model, every phase that exists
    elana-magic random:llama-3.1-8b --size --batch 1 8 --seq-len 1024 8192
    elana-magic /models/Llama-3.2-1B --size --gib --json

Each measurement is a ``Phase``: its flag, its own options, and a function that takes the model
target and the parsed options and returns a report. To add one (``--ttft``, ``--energy``, ...),
write the function and append a ``Phase`` to ``PHASES``; with no phase flag, all of them run.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .report import json_safe


class ModelTarget:
    """What the user named (nothing = the embedded default), materialized only when a phase needs it."""

    def __init__(self, spec: str | None):
        self.spec = spec
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
            self._loaded = load_model(self.spec)
        return self._loaded

    @property
    def model(self):
        return self.loaded.model

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None


def load_model(spec: str | None):
    """The embedded default (None), a random preset (``random:NAME``) or a local folder / hub id."""
    from .models import PRESETS, LoadedModel, default_model, random_model

    if spec is None:
        return default_model()
    if spec.startswith("random:"):
        name = spec.split(":", 1)[1]
        if name not in PRESETS:
            raise SystemExit(f"elana-magic: unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        return LoadedModel(random_model(name), None, f"{name} shape, RANDOM weights", True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(spec).eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except Exception:  # a folder without tokenizer files: phases use random token ids
        tokenizer = None
    return LoadedModel(model, tokenizer, spec, False)


@dataclass
class Phase:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[ModelTarget, argparse.Namespace], Any]


# --- size -------------------------------------------------------------------------------------


def _size_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("size")
    group.add_argument("--batch", type=int, nargs="+", default=[1], metavar="B", help="batch sizes (default 1)")
    group.add_argument("--seq-len", type=int, nargs="+", default=[1024, 2048], metavar="L",
                       help="context lengths the cache holds (default 1024 2048)")
    group.add_argument("--cache-dtype", default=None, metavar="DT", help="KV cache dtype (default: the model's)")
    group.add_argument("--gib", action="store_true", help="binary units (GiB) instead of SI (GB)")
    group.add_argument("--no-check", action="store_true", help="skip the measured cross-check (a real prefill)")


def run_size(target: ModelTarget, args: argparse.Namespace):
    from .size import measure_size

    # A folder, hub id or preset is sized from its config on the meta device, unless another phase
    # has already loaded the weights.
    what = target.model if (target.spec is None or target.is_loaded) else target.spec
    report = measure_size(what, batch=args.batch, seq_len=args.seq_len, cache_dtype=args.cache_dtype,
                          binary=args.gib, cross_check=not args.no_check,
                          label=target.label if target.is_loaded else None)
    return report


PHASES: list[Phase] = [
    Phase("size", "parameters, buffers, KV cache and SSM state", _size_arguments, run_size),
]


# --- the command ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elana-magic",
        description="Measure what an LLM costs. With no phase flag, every phase runs.",
    )
    parser.add_argument("model", nargs="?", default=None,
                        help="random:PRESET, a local folder or a hub id (default: the embedded SmolLM2-135M)")
    for phase in PHASES:
        parser.add_argument(f"--{phase.name}", action="store_true", help=phase.help)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    for phase in PHASES:
        phase.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .size import SizeError

    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("batch", "seq_len"):
        values = getattr(args, name, None) or []
        if any(v <= 0 for v in values):
            parser.error(f"--{name.replace('_', '-')} must be positive integers")
    chosen = [p for p in PHASES if getattr(args, p.name)] or PHASES
    target = ModelTarget(args.model)
    results: dict[str, Any] = {}
    for phase in chosen:
        try:
            report = phase.run(target, args)
        except SizeError as exc:
            parser.exit(2, f"elana-magic: {exc}\n")
        results[phase.name] = report
        if not args.json:
            print(f"== {phase.name}: {target.label}")
            print(report.to_text())
            print()
    if args.json:
        print(json.dumps({"model": target.label, **{k: json_safe(r.to_dict()) for k, r in results.items()}}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
