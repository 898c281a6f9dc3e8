"""``%elana_latency``: TTFT, TPOT and TTLT (with energy and roofline) of a model already in the notebook."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments, parse_argstring

from ..core.options import magic_options
from ._common import _drop, _live_view, deliver, evaluate, is_quoted, resolve_model, unquote


def _load_model(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


@magics_class
class LatencyMagics(Magics):
    @magic_arguments()
    @magic_options("elana_latency")
    @line_magic
    def elana_latency(self, line: str = ""):
        """Measure TTFT, TPOT and TTLT of MODEL with energy per phase and roofline context.

        No phase flag measures all three. Examples::

            %elana_latency model --batch 1 --prompt-len 512 --gen-len 128
            %elana_latency model --tokenizer tok --prompt "The capital of France is" --gen-len 32
        """
        from ..latency import measure_latency
        from ..latency.session import GenerationInputError, GenerationOutOfMemory

        args = parse_argstring(self.elana_latency, line)
        if args.prompt is not None:
            args.prompt = unquote(args.prompt)  # the parser keeps the quotes
        if args.label is not None:
            args.label = unquote(args.label)
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
        live = _live_view("elana latency", quiet=args.quiet)
        try:
            report = measure_latency(
                model, tokenizer=tokenizer, phases=phases, batch=args.batch, prompt_len=args.prompt_len,
                gen_len=args.gen_len, energy=args.energy, cuda_graph=args.cuda_graph, warmup=args.warmup,
                repeats=args.repeats, min_time=args.min_time, label=args.label, prompt=args.prompt,
                peak_bw=args.peak_bw, peak_flops=args.peak_flops,
                progress=live if live is not None else not args.quiet, compile=args.compile)
        except (GenerationInputError, GenerationOutOfMemory) as exc:
            _drop(live)
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            _drop(live)
            raise UsageError("interrupted: nothing was kept, and the model is as it was") from None
        except BaseException:
            _drop(live)
            raise
        if live is not None:
            live.stop()
        try:
            return deliver(self.shell, report, args, live=live)
        finally:
            if live is not None:
                live.close_widgets()
