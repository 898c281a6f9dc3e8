"""``%elana_size``: parameters, buffers, KV cache and SSM state of a model, for a (batch, seq_len) grid."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments

from ..core import defaults
from ..core.options import magic_options
from ._common import deliver, error_boundary, evaluate, is_quoted, parse_with_model, require_module, unquote

_FAILED = "the model failed while it was sized ({error}); nothing was kept"
_INTERRUPTED = "interrupted: nothing was sized"


@magics_class
class SizeMagics(Magics):
    @magic_arguments()
    @magic_options("elana_size")
    @line_magic
    def elana_size(self, line: str = ""):
        """Size a model and its cache: parameters, buffers, KV cache, SSM state, model + cache.

        Examples::

            %elana_size model --batch 1 8 --seq-len 1024 4096
            %elana_size "/models/Llama-3.1-8B" --gib
            %elana_size "$folder" --seq-len 8192       # $name and {expr} expand, as in any line magic
            r = %elana_size model -o
            %elana_size model --max-batch --seq-len 4096  # the largest batch that fits the free memory
            %elana_size model --max-seq-len --batch 8     # the largest length that fits
        """
        from ..size import measure_size

        args = _parse(self.elana_size, line)
        if args.max_batch or args.max_seq_len:
            return deliver(self.shell, self._fit(args), args)
        target = unquote(args.model) if is_quoted(args.model) else require_module(
            evaluate(self.shell, args.model, "model"), args.model)
        batch = args.batch or list(defaults.SIZE_BATCH)  # unset in the spec: --max-batch tells given from not
        seq_len = args.seq_len or list(defaults.SIZE_SEQ_LEN)
        with error_boundary(failed=_FAILED, interrupted=_INTERRUPTED):
            report = measure_size(target, batch=batch, seq_len=seq_len, cache_dtype=args.cache_dtype,
                                  binary=args.gib, cross_check=not args.no_check,
                                  label=None if is_quoted(args.model) else args.model,
                                  trust_remote_code=args.trust_remote_code)
        return deliver(self.shell, report, args)


    def _fit(self, args):
        from ..size import largest_fit

        if args.max_batch and args.max_seq_len:
            raise UsageError("--max-batch and --max-seq-len ask different questions: pass one")
        if args.max_batch:
            if args.batch is not None:
                raise UsageError("--max-batch answers the batch: give --seq-len L, not --batch")
            if not args.seq_len or len(args.seq_len) != 1:
                raise UsageError("--max-batch needs one length: e.g. --max-batch --seq-len 4096")
            at = {"seq_len": args.seq_len[0]}
        else:
            if args.seq_len is not None:
                raise UsageError("--max-seq-len answers the length: give --batch B, not --seq-len")
            batches = args.batch or [1]
            if len(batches) != 1:
                raise UsageError("--max-seq-len needs one batch: e.g. --max-seq-len --batch 8")
            at = {"batch": batches[0]}
        target = unquote(args.model) if is_quoted(args.model) else require_module(
            evaluate(self.shell, args.model, "model"), args.model)
        with error_boundary(failed=_FAILED, interrupted=_INTERRUPTED):
            return largest_fit(target, cache_dtype=args.cache_dtype, binary=args.gib, **at)


def _parse(magic, line: str):
    if not line.strip():
        raise UsageError("%elana_size needs a model: e.g. `%elana_size model --batch 1 8 --seq-len 1024`")
    try:
        return parse_with_model(magic, line)
    except UsageError as exc:
        raise UsageError(f"{str(exc).strip().splitlines()[-1]}: see %elana_size?") from None
