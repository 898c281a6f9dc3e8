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


def _load_model(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


@magics_class
class LatencyMagics(Magics):
    @magic_arguments()
    @argument("model", nargs="+", help="A model in the notebook (name or expression), or a quoted local folder; "
                                       "two or more: a paired A/B in alternating rounds.")
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
    @argument("--label", metavar="NAME", default=None,
              help="A name for this measurement (paired: comma-separated, one per model; default their names).")
    @argument("--rounds", type=int, default=4, help="Paired mode: alternating rounds per model (default 4).")
    @output_arguments
    @line_magic
    def elana_latency(self, line: str = ""):
        """Measure TTFT, TPOT and TTLT of MODEL with energy per phase and roofline context.

        No phase flag measures all three. Examples::

            %elana_latency model --batch 1 --prompt-len 512 --gen-len 128
            %elana_latency model --tokenizer tok --prompt "The capital of France is" --gen-len 32

        Two or more models: a paired A/B, measured in alternating rounds (A, B, A, B, ...) in one call so
        that drifting clocks and temperature fall on all alike; shows (and with -o returns) the
        comparison, and each model's report joins %elana_history. Make the edit on a copy::

            import copy, torch
            half = copy.deepcopy(model).to(torch.bfloat16)                    # a dtype change
            pruned = copy.deepcopy(model)                                     # dropped layers
            pruned.model.layers = pruned.model.layers[: 2 * len(pruned.model.layers) // 3]
            pruned.config.num_hidden_layers = len(pruned.model.layers)
            eager = copy.deepcopy(model)                                      # another attention
            eager.set_attn_implementation("eager")
            %elana_latency model pruned --tpot --rounds 6
        """
        from ..latency import measure_latency
        from ..latency.session import GenerationInputError, GenerationOutOfMemory

        args = parse_argstring(self.elana_latency, line)
        if args.prompt is not None:
            args.prompt = unquote(args.prompt)  # the parser keeps the quotes
        if args.label is not None:
            args.label = unquote(args.label)
        if len(args.model) > 1:
            return self._paired(args)
        model_expr = args.model[0]
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
        phases = _phases(args)
        _check_lengths(args)
        try:
            report = measure_latency(
                model, tokenizer=tokenizer, phases=phases, batch=args.batch, prompt_len=args.prompt_len,
                gen_len=args.gen_len, energy=args.energy, cuda_graph=args.cuda_graph, warmup=args.warmup,
                repeats=args.repeats, min_time=args.min_time, label=args.label, prompt=args.prompt,
                peak_bw=parse_rate(args.peak_bw, "--peak-bw"), peak_flops=parse_rate(args.peak_flops, "--peak-flops"),
                progress=not args.quiet, compile=args.compile)
        except (GenerationInputError, GenerationOutOfMemory) as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise UsageError("interrupted: nothing was kept, and the model is as it was") from None
        return deliver(self.shell, report, args)

    def _paired(self, args):
        """Several models in alternating rounds: each report joins the history; the comparison is shown."""
        from ..latency import measure_paired
        from ..latency.session import GenerationInputError, GenerationOutOfMemory

        if args.prompt is not None:
            raise UsageError("paired mode measures random prompts of --prompt-len tokens: drop --prompt")
        if args.rounds < 1:
            raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
        models = [resolve_model(self.shell, expr, load=_load_model) for expr in args.model]
        if len({id(m) for m in models}) < len(models):
            raise UsageError("the same model is given twice: compare an edited copy (copy.deepcopy(model))")
        labels = [x.strip() for x in args.label.split(",")] if args.label else [unquote(e) for e in args.model]
        if len(labels) != len(models):
            raise UsageError(f"--label needs one name per model ({len(models)}), comma-separated")
        if len(set(labels)) != len(labels):
            raise UsageError(f"the labels must differ, got {labels}")
        _check_lengths(args)
        try:
            comparison = measure_paired(
                models, labels=labels, rounds=args.rounds, phases=_phases(args), batch=args.batch,
                prompt_len=args.prompt_len, gen_len=args.gen_len, energy=args.energy, cuda_graph=args.cuda_graph,
                warmup=args.warmup, repeats=args.repeats, min_time=args.min_time,
                peak_bw=parse_rate(args.peak_bw, "--peak-bw"), peak_flops=parse_rate(args.peak_flops, "--peak-flops"),
                progress=not args.quiet, compile=args.compile)
        except (GenerationInputError, GenerationOutOfMemory) as exc:
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise UsageError("interrupted: nothing was kept, and the models are as they were") from None
        from ..core.history import HISTORY

        for report in comparison.reports:
            HISTORY.add(report)
        return deliver(self.shell, comparison, args, record=False)


def _phases(args) -> list[str]:
    return [p for p in ("ttft", "tpot", "ttlt") if getattr(args, p)] or ["ttft", "tpot", "ttlt"]


def _check_lengths(args) -> None:
    for name, value, low in (("--batch", args.batch, 1), ("--prompt-len", args.prompt_len, 1),
                             ("--gen-len", args.gen_len, 1), ("--repeats", args.repeats, 1),
                             ("--warmup", args.warmup, 0)):
        if value < low:
            raise UsageError(f"{name} must be at least {low}, got {value}")
    if args.min_time < 0:
        raise UsageError(f"--min-time must be >= 0 seconds, got {args.min_time}")
