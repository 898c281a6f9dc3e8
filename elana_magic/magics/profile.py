"""%elana_profile MODEL --phase ... (a phase of a model) and %%elana_profile (any cell): kernel traces."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import magic_arguments

from ..core import defaults
from ..core.options import magic_options
from ..core.errors import one_line
from ._common import deliver, error_boundary, is_quoted, parse_line, parse_with_model, resolve_model, unquote

_PHASE_ONLY = ("phase", "batch", "prompt_len", "gen_len", "steps", "cuda_graph")


@magics_class
class ProfileMagics(Magics):
    @magic_arguments()
    @magic_options("elana_profile")
    @no_var_expand
    @line_cell_magic
    def elana_profile(self, line: str = "", cell: str | None = None):
        """Profile a phase of a model, or a whole cell, with torch.profiler; write a Chrome trace for Perfetto.

        %elana_profile model --phase tpot --steps 16      decode steps of `model` (warm-up outside the capture)
        %%elana_profile --label my-cell                   everything the cell runs

        Shows the kernel timeline (zoomable), top kernels, a breakdown by kind, GPU busy/idle and launch gaps;
        on a CPU-only machine the CPU trace and an op table. The trace file opens in ui.perfetto.dev.
        """
        args = parse_with_model(self.elana_profile, line) if cell is None else parse_line(self.elana_profile, line)
        for name in ("out", "label"):  # the parser keeps quotes: --out "my traces" is the folder my traces
            value = getattr(args, name)
            if value is not None:
                setattr(args, name, unquote(value))
                if not getattr(args, name).strip():
                    raise UsageError(f"--{name} is empty: give a folder name" if name == "out"
                                     else "--label is empty: give a short name such as llama-decode")
        from .. import profile as prof

        if cell is None:
            report = self._profile_phase(args, prof)
        else:
            report = self._profile_cell(args, cell, prof)
        return deliver(self.shell, report, args)

    def _profile_phase(self, args, prof):
        if not args.model:
            raise UsageError("%elana_profile needs a model: `%elana_profile model --phase tpot` "
                             "(or use %%elana_profile to profile a cell)")
        model = resolve_model(self.shell, args.model, trust_remote_code=args.trust_remote_code, quiet=args.quiet)
        phase = args.phase or defaults.PROFILE_PHASE
        label = args.label or (f"{args.model}-{phase}" if args.model.isidentifier() else None)
        if label is None and is_quoted(args.model):
            label = f"{unquote(args.model).rstrip('/').split('/')[-1].replace('random:', '')}-{phase}"
        kwargs = dict(phase=phase, batch=args.batch or defaults.BATCH, prompt_len=args.prompt_len or defaults.PROMPT_LEN,
                      gen_len=args.gen_len or defaults.GEN_LEN, steps=args.steps, out=args.out, label=label,
                      gzip=args.gzip, cuda_graph=args.cuda_graph, top=args.top)
        with error_boundary(failed="the model failed under the profiler ({error}); no trace written",
                            interrupted="interrupted: the profiler was stopped, no trace written, the model is as it was"):
            try:
                return prof.profile_phase(model, **kwargs)
            except prof.ProfileInterrupted as exc:
                raise UsageError(f"interrupted while reading the trace back: the trace is complete and kept at "
                                 f"{exc.path!r}; the model is as it was") from None

    def _profile_cell(self, args, cell: str, prof):
        given = [f"--{n.replace('_', '-')}" for n in _PHASE_ONLY if getattr(args, n) is not None]
        if args.model or given:
            extra = args.model or given[0]
            raise UsageError(f"%%elana_profile profiles the cell and takes no {extra!r}: "
                             "use the line magic `%elana_profile MODEL --phase ...` for a phase")
        if not cell.strip():
            raise UsageError("the cell is empty: put the code to profile below %%elana_profile")
        with error_boundary(failed="the profiler failed ({error}); no trace written",
                            interrupted="interrupted: the profiler was stopped and no trace was written"):
            try:
                with prof.profile_block(out=args.out, label=args.label or "cell", gzip=args.gzip,
                                        top=args.top) as handle:
                    result = self.shell.run_cell(cell, store_history=False)
                    if result.error_before_exec is not None or result.error_in_exec is not None:
                        raise _CellFailed(result.error_before_exec or result.error_in_exec)
            except prof.ProfileInterrupted as exc:
                raise UsageError(f"interrupted while reading the trace back: the trace is complete and kept at "
                                 f"{exc.path!r}") from None
            except _CellFailed as failed:
                if isinstance(failed.error, KeyboardInterrupt):
                    raise KeyboardInterrupt from None
                raise UsageError(f"the cell raised {one_line(failed.error)} (shown above); no trace written") from None
        return handle.report


class _CellFailed(Exception):  # internal: the cell's own error, already shown by run_cell
    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error
