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

    def _paired(self, args):
        """Several models in alternating rounds: each report joins the history; the comparison is shown."""
        from ..core.history import HISTORY
        from ..latency import measure_paired
        from ..latency.session import GenerationInputError, GenerationOutOfMemory

        if args.prompt is not None:
            raise UsageError("paired mode measures random prompts of --prompt-len tokens: drop --prompt")
        models = [resolve_model(self.shell, expr, load=_load_model) for expr in args.model]
        if len({id(m) for m in models}) < len(models):
            raise UsageError("the same model is given twice: compare an edited copy (copy.deepcopy(model))")
        labels = [x.strip() for x in args.label.split(",")] if args.label else [unquote(e) for e in args.model]
        if len(labels) != len(models):
            raise UsageError(f"--label needs one name per model ({len(models)}), comma-separated")
        if len(set(labels)) != len(labels):
            raise UsageError(f"the labels must differ, got {labels}")
        phases = [p for p in ("ttft", "tpot", "ttlt") if getattr(args, p)] or ["ttft", "tpot", "ttlt"]
        live = _live_view("elana latency (paired)", quiet=args.quiet)
        try:
            comparison = measure_paired(
                models, labels=labels, rounds=args.rounds, phases=phases, batch=args.batch,
                prompt_len=args.prompt_len, gen_len=args.gen_len, energy=args.energy, cuda_graph=args.cuda_graph,
                warmup=args.warmup, repeats=args.repeats, min_time=args.min_time, peak_bw=args.peak_bw,
                peak_flops=args.peak_flops, progress=live if live is not None else not args.quiet,
                compile=args.compile)
        except (GenerationInputError, GenerationOutOfMemory) as exc:
            _drop(live)
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            _drop(live)
            raise UsageError("interrupted: nothing was kept, and the models are as they were") from None
        except BaseException:
            _drop(live)
            raise
        if live is not None:
            live.stop()
        for report in comparison.reports:
            HISTORY.add(report)
        try:
            return deliver(self.shell, comparison, args, live=live, record=False)
        finally:
            if live is not None:
                live.close_widgets()
