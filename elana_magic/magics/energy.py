"""``%%elana_energy`` (a cell) and ``%elana_energy STATEMENT`` (repeated until the window is long enough).

The cell runs as a normal cell would, through the shell's own ``run_cell`` (as pyinstrument's magic
does): top-level ``await`` works, its assignments land in the namespace, its last expression is the
magic's value (shown as Out[n]), its errors are shown as a plain cell shows them, followed by one
``UsageError`` line saying no report was made (so "Run all" stops there). Measurement lives in
``elana_magic.energy``; this module parses options, runs the code and shows the report.
"""

from __future__ import annotations

import ast
import atexit
import re
import warnings
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, needs_local_scope, no_var_expand
from IPython.core.magic_arguments import magic_arguments

from ..core.options import magic_flags, magic_options
from ..core.errors import one_line
from ._common import _live_view, deliver, error_boundary, parse_line, unquote

_meters: dict[tuple[int, ...] | None, Any] = {}  # one meter per device set: idle power measured once
_VALUED, _FLAGS = magic_flags("elana_energy")  # for splitting the statement off the options


def meter_for(devices: tuple[int, ...] | None):
    """The shell's meter for these devices (created once, so idle power is measured once)."""
    from ..energy import EnergyMeter

    if devices not in _meters:
        try:
            _meters[devices] = EnergyMeter(devices=list(devices) if devices is not None else None)
        except ValueError as exc:
            raise UsageError(f"--devices: {exc}") from None
    return _meters[devices]


@atexit.register
def close_meters() -> None:
    """Close every meter the magics opened (at exit, on unload, in tests)."""
    while _meters:
        _meters.popitem()[1].close()


# one shell word: quoted parts ("a \\"b\\"" with escapes, 'a'), escaped characters and plain ones, run together
_WORD = r"""((?:"(?:\\.|[^"\\])*"|'[^']*'|\\.|[^\s'"\\])+(?=\s|$)|\S+)\s*"""


def split_options(line: str) -> tuple[str, str]:
    """'--label x -o f(a, "b c")' -> ('--label x -o', 'f(a, "b c")'): the statement keeps its quoting."""
    rest, opts = line.strip(), []
    while rest.startswith("-"):
        token = re.match(r"(\S+)\s*", rest)
        name, after = token.group(1), rest[token.end():]
        if name == "--":
            rest = after
            break
        if name.split("=", 1)[0] in _FLAGS or ("=" in name and name.split("=", 1)[0] in _VALUED):
            opts.append(name)
            rest = after
        elif name in _VALUED:
            value = re.match(_WORD, after)
            if value is None:
                opts.append(name)
                rest = ""
                break
            opts += [name, value.group(1)]
            rest = after[value.end():]
        else:
            break  # not one of ours: the statement starts here (e.g. `-x`)
    return " ".join(opts), rest


@magics_class
class EnergyMagics(Magics):
    """Energy windows around notebook code."""

    @magic_arguments()
    @magic_options("elana_energy")
    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def elana_energy(self, line: str = "", cell: str | None = None, local_ns: dict | None = None):
        """Measure the energy of a cell, or of one statement repeated until the window is long enough.

            %%elana_energy [--devices 0,1] [--label NAME] [--no-plot] [-o] [-v VAR] [-q]
            %elana_energy [--min-time S] [options] STATEMENT

        GPU devices are synchronized at both edges of the window. The report gives joules (gross and
        net of idle), duration, average/peak/idle watts, per-device figures, the method and its
        uncertainty, and a plot of power over time. Without a sensor the code still runs and is timed.
        """
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in the user's traceback
        if cell is None:
            option_text, statement = split_options(line)
        else:
            option_text, statement = line, ""
        args = parse_line(self.elana_energy, option_text)
        if cell is None and not statement.strip():
            raise UsageError("give a statement to measure, e.g. `%elana_energy model(**inputs)`, "
                             "or use `%%elana_energy` on a cell")
        if args.label is not None:
            args.label = unquote(args.label)
        meter = meter_for(args.devices)
        namespace = local_ns if local_ns is not None else self.shell.user_ns
        live = _live_view("elana energy" + (f" - {args.label}" if args.label else ""), quiet=args.quiet)
        failed = ("the statement raised {error}; no energy report" if cell is None
                  else "the energy measurement failed ({error}); no report")
        with error_boundary(live, failed=failed, interrupted="interrupted: the energy window was closed, no report"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=_short_window_warning())
                if cell is None:
                    if live is not None:
                        live.phase("statement (repeated)")
                    report = self._measure_statement(statement, namespace, meter, args)
                    value = None
                else:
                    report, value = self._measure_cell(cell, namespace, meter, args, live)
        if live is not None:
            live.stop()
        report.show_plot = not args.no_plot
        try:
            returned = deliver(self.shell, report, args, live=live)
        finally:
            if live is not None:
                live.close_widgets()
        return returned if returned is not None else value

    def _compile(self, source: str):
        """(body code, last-expression code or None), compiled as IPython compiles a cell."""
        shell = self.shell
        transformed = shell.transform_cell(source)
        tree = shell.transform_ast(shell.compile.ast_parse(transformed))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        filename = shell.compile.cache(transformed, shell.execution_count, raw_code=source)
        body = shell.compile(tree, filename, "exec")
        return body, (shell.compile(last, filename, "eval") if last is not None else None)

    def _measure_cell(self, cell: str, namespace: dict, meter, args, live=None):
        """Run the cell with ``shell.run_cell``, the window opened and closed around its code by an AST
        transformer (so the shell parses, awaits and reports errors as for any cell)."""
        window = _CellWindow(meter, args.label, live)
        ns = self.shell.user_ns
        ns[_WINDOW_NAME] = window
        transformer = _WrapInWindow()
        self.shell.ast_transformers.append(transformer)
        outer = self.shell.displayhook.exec_result  # the inner run_cell resets it; Out[n] is the outer cell's
        try:
            result = self.shell.run_cell(cell, store_history=False)
        finally:
            self.shell.displayhook.exec_result = outer
            if transformer in self.shell.ast_transformers:
                self.shell.ast_transformers.remove(transformer)
            ns.pop(_WINDOW_NAME, None)
            value = ns.pop(_VALUE_NAME, None)
        if result.error_before_exec is not None:
            raise UsageError(f"the cell did not run ({type(result.error_before_exec).__name__}, shown above); "
                             "nothing was measured") from None
        if result.error_in_exec is not None:
            error = result.error_in_exec
            if isinstance(error, KeyboardInterrupt):
                raise UsageError("interrupted: the energy window was closed, no report") from None
            raise UsageError(f"the cell raised {one_line(error)} (shown above); no energy report") from None
        if window.report is None:  # the shell runs nothing for a blank cell
            raise UsageError("the cell is empty: put the code to measure below %%elana_energy")
        if cell.rstrip().endswith(";"):
            value = None  # a trailing ';' hides the value, as in a plain cell
        return window.report, value

    def _measure_statement(self, statement: str, namespace: dict, meter, args):
        __tracebackhide__ = True  # noqa: F841
        from ..energy import measure_energy

        try:
            body, last = self._compile(statement)
        except SyntaxError as exc:
            raise UsageError(f"the statement {statement.strip()!r} is not valid Python ({exc.msg}); "
                             "options go before it, e.g. `%elana_energy --label NAME model(x)`") from None
        glob = self.shell.user_ns

        def run() -> None:
            __tracebackhide__ = True  # noqa: F841
            exec(body, glob, namespace)  # noqa: S102
            if last is not None:
                eval(last, glob, namespace)  # noqa: S307

        return measure_energy(run, meter=meter, min_time=args.min_time, label=args.label)


_WINDOW_NAME = "__elana_energy_window__"
_VALUE_NAME = "__elana_energy_value__"


class _CellWindow:
    """The energy window the wrapped cell enters and leaves (``with __elana_energy_window__: ...``)."""

    def __init__(self, meter, label: str | None, live=None):
        self.meter, self.label, self.live = meter, label, live
        self.report = None
        self._cm = None

    def __enter__(self):
        self._cm = self.meter.window(label=self.label)
        self._win = self._cm.__enter__()
        if self.live is not None:
            self.live.phase("cell", power=self._win.power_so_far)
        return self

    def __exit__(self, *exc) -> bool:
        try:
            return bool(self._cm.__exit__(*exc))
        finally:
            if exc[0] is None:
                self.report = self._win.report


class _WrapInWindow(ast.NodeTransformer):
    """``body; last`` -> ``with __elana_energy_window__: body; __elana_energy_value__ = last`` (once)."""

    def __init__(self):
        self.used = False

    def visit_Module(self, node: ast.Module) -> ast.Module:
        if self.used:  # a cell run from inside the measured cell is left alone
            return node
        self.used = True
        body = list(node.body)
        if body and isinstance(body[-1], ast.Expr):
            target = ast.Name(id=_VALUE_NAME, ctx=ast.Store())
            body[-1] = ast.Assign(targets=[target], value=body[-1].value)
        wrapped = ast.With(items=[ast.withitem(context_expr=ast.Name(id=_WINDOW_NAME, ctx=ast.Load()))],
                           body=body or [ast.Pass()])
        node.body = [wrapped]
        return ast.fix_missing_locations(ast.copy_location(node, node))


def _short_window_warning():
    from ..energy import ShortWindowWarning

    return ShortWindowWarning
