"""``%elana_latency``: TTFT, TPOT and TTLT (with energy and roofline) of a model already in the notebook."""

from __future__ import annotations

import re

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ._common import deliver, evaluate, is_quoted, output_arguments, resolve_model, unquote

_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}


def parse_rate(text: str | None, what: str) -> float | None:
    """'3.35e12', '3.35T', '3.35 TB/s', '989 TFLOP/s' -> a number per second."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?\d+)?)\s*([kmgtp]?)(?:b|flops?|flop)?(?:/s)?\s*", text.lower())
    value = float(m.group(1)) * _SCALE[m.group(2)] if m else None
    if value is None or value <= 0:
        raise UsageError(f"{what} must be a positive rate such as 3.35e12 or 3.35TB/s, got {text!r}")
    return value


def _value_or_list(values: list[int]):
    """One value as itself (a LatencyReport), several as a list (a grid)."""
    return values[0] if len(values) == 1 else values


def _load_model(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


@magics_class
class LatencyMagics(Magics):
    @magic_arguments()
    @argument("model", help="A model in the notebook (name or expression), or a quoted local folder.")
    @argument("--tokenizer", metavar="TOK", default=None,
              help="Tokenizer for --prompt: a name in the notebook or a quoted local folder.")
    @argument("--prompt", metavar="TEXT", default=None,
              help="A real prompt (needs a tokenizer); the prompt length then follows the text.")
    @argument("--ttft", action="store_true", help="Measure time to first token (one prefill).")
    @argument("--tpot", action="store_true", help="Measure time per output token (decode steps).")
    @argument("--ttlt", action="store_true", help="Measure time to last token (a whole request).")
    @argument("--batch", type=int, nargs="+", default=[1], metavar="B",
              help="Sequences per batch (default 1); several values measure a grid.")
    @argument("--prompt-len", type=int, nargs="+", default=[512], metavar="P",
              help="Prompt tokens (default 512); several values measure a grid.")
    @argument("--gen-len", type=int, nargs="+", default=[128], metavar="G",
              help="Generated tokens, EOS ignored (default 128); several values measure a grid.")
    @argument("--energy", dest="energy", action="store_const", const=True, default=None,
              help="Measure energy per phase (default: on when a sensor exists).")
    @argument("--no-energy", dest="energy", action="store_const", const=False, help="Do not measure energy.")
    @argument("--cuda-graph", dest="cuda_graph", action="store_const", const=True, default=None,
              help="Decode with a static cache and one step in a CUDA graph (the CUDA default).")
    @argument("--no-cuda-graph", dest="cuda_graph", action="store_const", const=False,
              help="Decode eagerly with a dynamic cache.")
    @argument("--no-compile", dest="compile", action="store_false", default=True,
              help="Capture the eager decode step in the CUDA graph instead of an Inductor-compiled one"
                   " (the default compiles once per model and shape, tens of seconds).")
    @argument("--warmup", type=int, default=2, help="Warm-up runs per phase (default 2).")
    @argument("--repeats", type=int, default=5, help="Minimum measured runs per phase (default 5).")
    @argument("--min-time", type=float, default=1.0,
              help="Minimum seconds per phase, unless the median's 95%% CI is within 1%% sooner (default 1).")
    @argument("--peak-bw", metavar="BYTES/S", default=None, help="Peak memory bandwidth, e.g. 3.35TB/s.")
    @argument("--peak-flops", metavar="FLOP/S", default=None, help="Peak FLOP/s, e.g. 989T.")
    @argument("--label", metavar="NAME", default=None, help="A name for this measurement.")
    @output_arguments
    @line_magic
    def elana_latency(self, line: str = ""):
        """Measure TTFT, TPOT and TTLT of MODEL with energy per phase and roofline context.

        No phase flag measures all three. Several values of --batch, --prompt-len or --gen-len measure
        every cell of the grid (a LatencyGridReport: one row per cell, plots, "out of memory" cells). Examples::

            %elana_latency model --batch 1 --prompt-len 512 --gen-len 128
            %elana_latency model --batch 1 8 32 --prompt-len 128 512 2048 --gen-len 128 256
            %elana_latency model --tokenizer tok --prompt "The capital of France is" --gen-len 32
        """
        from ..latency import measure_latency
        from ..latency.session import GenerationInputError, GenerationOutOfMemory

        args = parse_argstring(self.elana_latency, line)
        if args.prompt is not None:
            args.prompt = unquote(args.prompt)  # the parser keeps the quotes
        if args.label is not None:
            args.label = unquote(args.label)
        if args.prompt is not None and any(len(v) > 1 for v in (args.batch, args.prompt_len, args.gen_len)):
            raise UsageError("--prompt sets one prompt length: give one --prompt-len and --batch value with it")
        model_expr = args.model
        model = resolve_model(self.shell, model_expr, load=_load_model)
        tokenizer = None
        if args.tokenizer is not None:
            if is_quoted(args.tokenizer):
                try:
                    tokenizer = _load_tokenizer(unquote(args.tokenizer))
                except Exception as exc:  # noqa: BLE001 - one line for the user
                    raise UsageError(f"could not load tokenizer {unquote(args.tokenizer)!r}: {type(exc).__name__}") from None
            else:
                tokenizer = evaluate(self.shell, args.tokenizer, "tokenizer")
        elif args.prompt is not None and is_quoted(model_expr):
            try:
                tokenizer = _load_tokenizer(unquote(model_expr))
            except Exception:  # noqa: BLE001 - then the missing tokenizer is reported below
                tokenizer = None
        if args.prompt is not None and tokenizer is None:
            raise UsageError("--prompt needs a tokenizer: pass --tokenizer TOK (a tokenizer in the notebook)")
        phases = [p for p in ("ttft", "tpot", "ttlt") if getattr(args, p)] or ["ttft", "tpot", "ttlt"]
        for name, values, low in (("--batch", args.batch, 1), ("--prompt-len", args.prompt_len, 1),
                                  ("--gen-len", args.gen_len, 1), ("--repeats", [args.repeats], 1),
                                  ("--warmup", [args.warmup], 0)):
            for value in values:
                if value < low:
                    raise UsageError(f"{name} must be at least {low}, got {value}")

        if args.min_time < 0:
            raise UsageError(f"--min-time must be >= 0 seconds, got {args.min_time}")
        try:
            report = measure_latency(
                model, tokenizer=tokenizer, phases=phases, batch=_value_or_list(args.batch),
                prompt_len=_value_or_list(args.prompt_len), gen_len=_value_or_list(args.gen_len), energy=args.energy, cuda_graph=args.cuda_graph, warmup=args.warmup,
                repeats=args.repeats, min_time=args.min_time, label=args.label, prompt=args.prompt,
                peak_bw=parse_rate(args.peak_bw, "--peak-bw"), peak_flops=parse_rate(args.peak_flops, "--peak-flops"),
                progress=not args.quiet, compile=args.compile)
        except (GenerationInputError, GenerationOutOfMemory) as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise UsageError("interrupted: nothing was kept, and the model is as it was") from None
        return deliver(self.shell, report, args)
