"""``%elana_size``: parameters, buffers, KV cache and SSM state of a model, for a (batch, seq_len) grid."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ._common import (deliver, evaluate, is_quoted, output_arguments, parse_with_model, positive_ints,
                      require_module, trust_argument, unquote)

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
    @trust_argument
    @output_arguments
    @line_magic
    def elana_size(self, line: str = ""):
        """Size a model and its cache: parameters, buffers, KV cache, SSM state, model + cache.

        Examples::

            %elana_size model --batch 1 8 --seq-len 1024 4096
            %elana_size "/models/Llama-3.1-8B" --gib
            %elana_size "$folder" --seq-len 8192       # $name and {expr} expand, as in any line magic
            r = %elana_size model -o
        """
        from ..size import SizeError, measure_size

        args = _parse(self.elana_size, line)
        batch = positive_ints("--batch", args.batch) or DEFAULT_BATCH
        seq_len = positive_ints("--seq-len", args.seq_len) or DEFAULT_SEQ_LEN
        target = unquote(args.model) if is_quoted(args.model) else require_module(
            evaluate(self.shell, args.model, "model"), args.model)
        try:
            report = measure_size(target, batch=batch, seq_len=seq_len, cache_dtype=args.cache_dtype,
                                  binary=args.gib, cross_check=not args.no_check,
                                  label=None if is_quoted(args.model) else args.model,
                                  trust_remote_code=args.trust_remote_code)
        except SizeError as exc:
            raise UsageError(str(exc)) from None
        return deliver(self.shell, report, args)


def _parse(magic, line: str):
    if not line.strip():
        raise UsageError("%elana_size needs a model: e.g. `%elana_size model --batch 1 8 --seq-len 1024`")
    try:
        return parse_with_model(magic, line)
    except UsageError as exc:
        raise UsageError(f"{str(exc).strip().splitlines()[-1]}: see %elana_size?") from None
