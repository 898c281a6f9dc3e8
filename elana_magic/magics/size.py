"""``%elana_size``: parameters, buffers, KV cache and SSM state of a model, for a (batch, seq_len) grid."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ._common import deliver, evaluate, is_quoted, output_arguments, positive_ints, require_module, unquote

DEFAULT_BATCH = [1]
DEFAULT_SEQ_LEN = [1024, 2048]


@magics_class
class SizeMagics(Magics):
    @magic_arguments()
    @argument("model", help="A model in the notebook (name or expression), or a quoted local folder / hub id "
                            "(sized from its config.json on the meta device) or \"random:PRESET\".")
    @argument("--batch", type=int, nargs="+", default=None, metavar="B",
              help=f"Batch sizes (default {' '.join(map(str, DEFAULT_BATCH))}).")
    @argument("--seq-len", type=int, nargs="+", default=None, metavar="L",
              help=f"Sequence lengths: the context the cache holds (default {' '.join(map(str, DEFAULT_SEQ_LEN))}).")
    @argument("--cache-dtype", default=None, metavar="DT",
              help="KV/conv cache dtype (e.g. bfloat16, float16, fp8); default: the model's dtype.")
    @argument("--gib", action="store_true", help="Binary units (GiB = 2**30 bytes) instead of SI (GB = 1e9 bytes).")
    @argument("--no-check", action="store_true", help="Skip the measured cross-check (a real prefill).")
    @argument("--max-batch", action="store_true",
              help="Answer the largest batch that fits the free memory at --seq-len L (one value).")
    @argument("--max-seq-len", action="store_true",
              help="Answer the largest length that fits the free memory at --batch B (one value, default 1).")
    @output_arguments
    @line_magic
    def elana_size(self, line: str = ""):
        """Size a model and its cache: parameters, buffers, KV cache, SSM state, model + cache.

        Examples::

            %elana_size model --batch 1 8 --seq-len 1024 4096
            %elana_size "/models/Llama-3.1-8B" --gib
            %elana_size "$folder" --seq-len 8192       # $name and {expr} expand, as in any line magic
            %elana_size model --max-batch --seq-len 4096  # the largest batch that fits the free memory
            %elana_size model --max-seq-len --batch 8     # the largest length that fits
            r = %elana_size model -o
        """
        from ..size import SizeError, measure_size

        args = _parse(self.elana_size, line)
        if args.max_batch or args.max_seq_len:
            return deliver(self.shell, self._fit(args), args)
        batch = positive_ints("--batch", args.batch) or DEFAULT_BATCH
        seq_len = positive_ints("--seq-len", args.seq_len) or DEFAULT_SEQ_LEN
        target = unquote(args.model) if is_quoted(args.model) else require_module(
            evaluate(self.shell, args.model, "model"), args.model)
        try:
            report = measure_size(target, batch=batch, seq_len=seq_len, cache_dtype=args.cache_dtype,
                                  binary=args.gib, cross_check=not args.no_check,
                                  label=None if is_quoted(args.model) else args.model)
        except SizeError as exc:
            raise UsageError(str(exc)) from None
        return deliver(self.shell, report, args)


    def _fit(self, args):
        from ..size import SizeError, largest_fit

        if args.max_batch and args.max_seq_len:
            raise UsageError("--max-batch and --max-seq-len ask different questions: pass one")
        if args.max_batch:
            if args.batch is not None:
                raise UsageError("--max-batch answers the batch: give --seq-len L, not --batch")
            lengths = positive_ints("--seq-len", args.seq_len)
            if not lengths or len(lengths) != 1:
                raise UsageError("--max-batch needs one length: e.g. --max-batch --seq-len 4096")
            at = {"seq_len": lengths[0]}
        else:
            if args.seq_len is not None:
                raise UsageError("--max-seq-len answers the length: give --batch B, not --seq-len")
            batches = positive_ints("--batch", args.batch) or [1]
            if len(batches) != 1:
                raise UsageError("--max-seq-len needs one batch: e.g. --max-seq-len --batch 8")
            at = {"batch": batches[0]}
        target = unquote(args.model) if is_quoted(args.model) else require_module(
            evaluate(self.shell, args.model, "model"), args.model)
        try:
            return largest_fit(target, cache_dtype=args.cache_dtype, **at)
        except SizeError as exc:
            raise UsageError(str(exc)) from None


def _parse(magic, line: str):
    if not line.strip():
        raise UsageError("%elana_size needs a model: e.g. `%elana_size model --batch 1 8 --seq-len 1024`")
    try:
        return parse_argstring(magic, line)
    except UsageError as exc:
        raise UsageError(f"{str(exc).strip().splitlines()[-1]}: see %elana_size?") from None
