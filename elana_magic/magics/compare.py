"""``%elana_history`` and ``%elana_compare``: the reports of this kernel, and any of them side by side."""

from __future__ import annotations

import json
import os
import shlex
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments

from ..core.options import magic_options
from ._common import deliver, error_boundary, literal, parse_line, unquote


def _resolve_item(shell, token: str):
    """A report from a notebook variable, a history index (3, #3, -1) or label, or a saved file."""
    from ..core.history import find_report
    from ..core.report import Report

    text = unquote(token)
    if text.isidentifier() and isinstance(shell.user_ns.get(text), Report):
        return shell.user_ns[text]
    try:
        return find_report(text)
    except (KeyError, TypeError) as exc:
        raise UsageError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None


def _refuse_repeats(tokens: list[str], reports: list) -> None:
    """A report compared with itself (the same object, or the same saved report twice) says nothing."""
    from ..core.report import json_safe

    seen: dict[str, str] = {}
    for token, report in zip(tokens, reports):
        key = json.dumps(json_safe(report.to_dict()), sort_keys=True)
        if key in seen:
            raise UsageError(f"{seen[key]!r} and {token!r} are the same report: compare it with another one "
                             "(%elana_history lists them)")
        seen[key] = token


def _split(item: str) -> list[str]:
    try:
        return shlex.split(item) if item.strip() else []
    except ValueError as exc:  # "No closing quotation"
        raise UsageError(f"{exc} in {item.strip()!r}: close the quote") from None


@magics_class
class CompareMagics(Magics):
    @magic_arguments()
    @magic_options("elana_history")
    @line_magic
    def elana_history(self, line: str = ""):
        """List the reports this kernel produced: index, label, kind, fingerprint and headline figures.

        Every report a magic produces joins the history (the last 200). Examples::

            %elana_history
            %elana_history --save runs.jsonl        # JSON lines: one report per line
            %elana_history --load runs.jsonl        # in a fresh kernel, or on another machine
            h = %elana_history -o                   # h.to_dataframe(), h[3], h["baseline"]
        """
        from ..core.history import HISTORY

        args = parse_line(self.elana_history, line)
        if args.clear:
            HISTORY.clear()
        if args.load:
            with error_boundary(failed=literal(f"could not load {unquote(args.load)!r}: ") + "{error}",
                                interrupted="interrupted: nothing was loaded"):
                loaded = HISTORY.load(unquote(args.load))
            if not args.quiet:
                print(f"loaded {len(loaded.added)} report(s) from {unquote(args.load)}")
                for refused in loaded.refused:
                    print(f"refused {refused}", file=sys.stderr)
        if args.save:
            path = os.path.expanduser(unquote(args.save))
            try:
                HISTORY.save(path)
            except OSError as exc:
                raise UsageError(f"cannot write {path!r}: {exc.strerror or exc}") from None
            if not args.quiet:
                print(f"saved {len(HISTORY)} report(s) to {path}")
        return deliver(self.shell, HISTORY, args, record=False)

    @magic_arguments()
    @magic_options("elana_compare")
    @line_magic
    def elana_compare(self, line: str = ""):
        """Compare reports side by side: every shared figure as a ratio to the first, with 95% intervals.

        Timed figures (TTFT, TPOT, TTLT) get an interval (bootstrapped from the samples both reports kept,
        or from the rounds of one paired measurement) and a verdict ("TPOT 12% lower (95% CI 10-14%)" or
        "no difference beyond noise", which a change inside ±1% also gets). Warns where the
        reports were not measured alike (device, engine, lengths, versions, power limit, clocks). Examples::

            %elana_compare baseline pruned           # labels from %elana_history
            %elana_compare 0 1 2                     # history indices; -1 is the latest
            %elana_compare rep_a "runs/b.json"       # a variable and a file written by rep.save(...)
            c = %elana_compare -2 -1 -o              # c.to_dataframe(), c.verdicts(), c.figure()
        """
        from ..core.compare import compare

        args = parse_line(self.elana_compare, line)
        tokens = [t for item in args.items for t in _split(item)]
        if len(tokens) < 2:
            raise UsageError("%elana_compare needs at least two reports: history indices, labels, variables or "
                             "files (see %elana_history)")
        with error_boundary(failed="could not compare these reports ({error})", interrupted="interrupted"):
            reports = [_resolve_item(self.shell, t) for t in tokens]
            _refuse_repeats(tokens, reports)
            comparison = compare(reports)
        return deliver(self.shell, comparison, args, record=False)
