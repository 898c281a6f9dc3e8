"""``%elana_latency``: TTFT, TPOT and TTLT (with energy and roofline) of a model already in the notebook."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments

from ..core.options import magic_options
from ._common import (_drop, _live_view, _one_line, deliver, evaluate, is_quoted, parse_with_model, resolve_model,
                      unquote)


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
        except UsageError:
            _drop(live)
            raise
        except KeyboardInterrupt:
            _drop(live)
            raise UsageError("interrupted: nothing was kept, and the model is as it was") from None
        except Exception as exc:  # the model itself failed (its forward raised)
            _drop(live)
            raise UsageError(f"the model failed during the measurement ({_one_line(exc)}); nothing was kept, "
                             "the model is as it was") from None
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
