"""``%elana_latency``: TTFT, TPOT and TTLT (with energy and roofline) of a model already in the notebook."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments

from ..core.options import magic_options
from ._common import (_live_view, deliver, error_boundary, evaluate, is_quoted, parse_with_model, resolve_model,
                      split_models, unquote)

_FAILED = "the model failed during the measurement ({error}); nothing was kept, the model is as it was"
_INTERRUPTED = "interrupted: nothing was kept, and the model is as it was"
_FAILED_PAIRED = "a model failed during the measurement ({error}); nothing was kept, the models are as they were"
_INTERRUPTED_PAIRED = "interrupted: nothing was kept, and the models are as they were"


def _value_or_list(values: list[int]):
    """One value as itself (a LatencyReport), several as a list (a grid)."""
    return values[0] if len(values) == 1 else values


def _settings(args, label: str | None):
    """The magic's options as one ``LatencySettings`` (checked here, before any model work)."""
    from ..latency.settings import LatencySettings

    phases = [p for p in ("ttft", "tpot", "ttlt") if getattr(args, p)] or None
    return LatencySettings(
        phases=phases, batch=_value_or_list(args.batch), prompt_len=_value_or_list(args.prompt_len),
        gen_len=_value_or_list(args.gen_len), energy=args.energy, cuda_graph=args.cuda_graph, compile=args.compile,
        prefill=args.prefill, warmup=args.warmup, repeats=args.repeats, min_time=args.min_time,
        rounds=args.rounds, label=label, prompt=args.prompt, peak_bw=args.peak_bw, peak_flops=args.peak_flops,
        usd_per_gpu_hour=args.usd_per_gpu_hour, usd_per_kwh=args.usd_per_kwh, gco2_per_kwh=args.gco2_per_kwh,
        cooldown=args.cooldown)


def _check_projection(args) -> None:
    """--project: known GPU names, one model and one configuration (checked before any measurement)."""
    from ..latency.projection import ProjectionError, resolve_targets

    try:
        resolve_targets(args.project)
    except ProjectionError as exc:
        raise UsageError(str(exc)) from None
    if len(split_models(args.model)) > 1:
        raise UsageError("--project takes one model: project each saved report with elana_magic.project(rep, [...])")
    if any(len(v) > 1 for v in (args.batch, args.prompt_len, args.gen_len)):
        raise UsageError("--project takes one configuration: give one --batch, --prompt-len and --gen-len value "
                         "(a grid's cell projects with elana_magic.project(grid.reports[i], [...]))")


@magics_class
class LatencyMagics(Magics):
    @magic_arguments()
    @magic_options("elana_latency")
    @line_magic
    def elana_latency(self, line: str = ""):
        """Measure TTFT, TPOT and TTLT of MODEL with energy per phase and roofline context.

        No phase flag measures all three. Several values of --batch, --prompt-len or --gen-len measure
        every cell of the grid (a LatencyGridReport: one row per cell, plots, "out of memory" cells). Examples::

            %elana_latency model --batch 1 --prompt-len 512 --gen-len 128
            %elana_latency model --batch 1 8 32 --prompt-len 128 512 2048 --gen-len 128 256
            %elana_latency model --tokenizer tok --prompt "The capital of France is" --gen-len 32
            %elana_latency model --project H100 L4 "Jetson AGX Orin"     # projected to other GPUs (not measured)

        Two or more models: a paired A/B, measured in alternating rounds (A B, B A, A B, ...) in one call so
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
        from ..loading import load_tokenizer

        args = parse_with_model(self.elana_latency, line)
        if args.prompt is not None:
            args.prompt = unquote(args.prompt)  # the parser keeps the quotes
        if args.label is not None:
            args.label = unquote(args.label)
        if args.prompt is not None and any(len(v) > 1 for v in (args.batch, args.prompt_len, args.gen_len)):
            raise UsageError("--prompt sets one prompt length: give one --prompt-len and --batch value with it")
        if args.project:
            _check_projection(args)
        if len(split_models(args.model)) > 1:
            if args.prompt is not None:
                raise UsageError("paired mode measures random prompts of --prompt-len tokens: drop --prompt")
            if any(len(v) > 1 for v in (args.batch, args.prompt_len, args.gen_len)):
                raise UsageError("a paired A/B takes one --batch, --prompt-len and --gen-len value each (a grid takes "
                                 "one model)")
        with error_boundary():
            settings = _settings(args, label=None if len(split_models(args.model)) > 1 else args.label)
        if len(split_models(args.model)) > 1:
            return self._paired(args, split_models(args.model), settings)
        model_expr = args.model
        trust = args.trust_remote_code
        model = resolve_model(self.shell, model_expr, trust_remote_code=trust, quiet=args.quiet)
        if args.project:
            from ..latency.projection import ProjectionError, check_projectable

            try:
                check_projectable(model, args.peak_bw, args.peak_flops)
            except ProjectionError as exc:
                raise UsageError(str(exc)) from None
        tokenizer = None
        if args.tokenizer is not None:
            if is_quoted(args.tokenizer):
                with error_boundary():
                    tokenizer = load_tokenizer(unquote(args.tokenizer), download=False, trust_remote_code=trust)
            else:
                tokenizer = evaluate(self.shell, args.tokenizer, "tokenizer")
        elif args.prompt is not None and is_quoted(model_expr) and not unquote(model_expr).startswith("random:"):
            tokenizer = _tokenizer_of(unquote(model_expr), trust)  # None: the missing tokenizer is said below
        if args.prompt is not None and tokenizer is None:
            raise UsageError("--prompt needs a tokenizer: pass --tokenizer TOK (a tokenizer in the notebook)")
        live = _live_view("elana latency", quiet=args.quiet)
        with error_boundary(live, failed=_FAILED, interrupted=_INTERRUPTED):
            report = measure_latency(model, tokenizer, settings=settings,
                                     progress=live if live is not None else not args.quiet)
        if live is not None:
            live.stop()
        if args.project:
            from ..latency.projection import attach_projection

            attach_projection(report, args.project)
        try:
            return deliver(self.shell, report, args, live=live)
        finally:
            if live is not None:
                live.close_widgets()

    def _paired(self, args, exprs: list[str], settings):
        """Several models in alternating rounds: each report joins the history; the comparison is shown."""
        from ..core.history import HISTORY
        from ..latency import measure_paired

        models = [resolve_model(self.shell, expr, trust_remote_code=args.trust_remote_code, quiet=args.quiet)
                  for expr in exprs]
        if len({id(m) for m in models}) < len(models):
            raise UsageError("the same model is given twice: compare an edited copy (copy.deepcopy(model))")
        labels = [x.strip() for x in args.label.split(",")] if args.label else [unquote(e) for e in exprs]
        if len(labels) != len(models):
            raise UsageError(f"--label needs one name per model ({len(models)}), comma-separated")
        if len(set(labels)) != len(labels):
            raise UsageError(f"the labels must differ, got {labels}")
        live = _live_view("elana latency (paired)", quiet=args.quiet)
        with error_boundary(live, failed=_FAILED_PAIRED, interrupted=_INTERRUPTED_PAIRED):
            comparison = measure_paired(models, labels=labels, settings=settings,
                                        progress=live if live is not None else not args.quiet)
        if live is not None:
            live.stop()
        for report in comparison.reports:
            HISTORY.add(report)
        try:
            return deliver(self.shell, comparison, args, live=live, record=False)
        finally:
            if live is not None:
                live.close_widgets()


def _tokenizer_of(spec: str, trust_remote_code: bool):
    """The tokenizer a quoted model folder or hub id ships with, or None."""
    from ..loading import ModelLoadError, load_tokenizer

    try:
        return load_tokenizer(spec, download=False, trust_remote_code=trust_remote_code)
    except ModelLoadError:
        return None
