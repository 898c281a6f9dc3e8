"""``%elana_latency``: TTFT, TPOT and TTLT (with energy and roofline) of a model already in the notebook."""

from __future__ import annotations

import re

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ._common import (_one_line, deliver, evaluate, is_quoted, output_arguments, parse_with_model, resolve_model,
                      trust_argument, unquote)

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
    @argument("--batch", type=int, default=1, help="Sequences per batch (default 1).")
    @argument("--prompt-len", type=int, default=512, help="Prompt tokens (default 512).")
    @argument("--gen-len", type=int, default=128, help="Generated tokens, EOS ignored (default 128).")
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
    @trust_argument
    @output_arguments
    @line_magic
    def elana_latency(self, line: str = ""):
        """Measure TTFT, TPOT and TTLT of MODEL with energy per phase and roofline context.

        No phase flag measures all three. Examples::

            %elana_latency model --batch 1 --prompt-len 512 --gen-len 128
            %elana_latency model --tokenizer tok --prompt "The capital of France is" --gen-len 32
        """
        from ..latency import measure_latency
        from ..latency.session import GenerationInputError, GenerationOutOfMemory

        from ..models import ModelLoadError, load_tokenizer

        args = parse_with_model(self.elana_latency, line)
        if args.prompt is not None:
            args.prompt = unquote(args.prompt)  # the parser keeps the quotes
        if args.label is not None:
            args.label = unquote(args.label)
        model_expr = args.model
        trust = args.trust_remote_code
        model = resolve_model(self.shell, model_expr, trust_remote_code=trust, quiet=args.quiet)
        tokenizer = None
        if args.tokenizer is not None:
            if is_quoted(args.tokenizer):
                try:
                    tokenizer = load_tokenizer(unquote(args.tokenizer), trust_remote_code=trust)
                except ModelLoadError as exc:
                    raise UsageError(str(exc)) from None
            else:
                tokenizer = evaluate(self.shell, args.tokenizer, "tokenizer")
        elif args.prompt is not None and is_quoted(model_expr) and not unquote(model_expr).startswith("random:"):
            try:
                tokenizer = load_tokenizer(unquote(model_expr), trust_remote_code=trust)
            except ModelLoadError:  # then the missing tokenizer is reported below
                tokenizer = None
        if args.prompt is not None and tokenizer is None:
            raise UsageError("--prompt needs a tokenizer: pass --tokenizer TOK (a tokenizer in the notebook)")
        phases = [p for p in ("ttft", "tpot", "ttlt") if getattr(args, p)] or ["ttft", "tpot", "ttlt"]
        for name, value, low in (("--batch", args.batch, 1), ("--prompt-len", args.prompt_len, 1),
                                 ("--gen-len", args.gen_len, 1), ("--repeats", args.repeats, 1),
                                 ("--warmup", args.warmup, 0)):
            if value < low:
                raise UsageError(f"{name} must be at least {low}, got {value}")
        if args.min_time < 0:
            raise UsageError(f"--min-time must be >= 0 seconds, got {args.min_time}")
        try:
            report = measure_latency(
                model, tokenizer=tokenizer, phases=phases, batch=args.batch, prompt_len=args.prompt_len,
                gen_len=args.gen_len, energy=args.energy, cuda_graph=args.cuda_graph, warmup=args.warmup,
                repeats=args.repeats, min_time=args.min_time, label=args.label, prompt=args.prompt,
                peak_bw=parse_rate(args.peak_bw, "--peak-bw"), peak_flops=parse_rate(args.peak_flops, "--peak-flops"),
                progress=not args.quiet, compile=args.compile)
        except (GenerationInputError, GenerationOutOfMemory) as exc:
            raise UsageError(str(exc)) from None
        except UsageError:
            raise
        except KeyboardInterrupt:
            raise UsageError("interrupted: nothing was kept, and the model is as it was") from None
        except Exception as exc:  # the model itself failed (its forward raised)
            raise UsageError(f"the model failed during the measurement ({_one_line(exc)}); nothing was kept, "
                             "the model is as it was") from None
        return deliver(self.shell, report, args)
