"""What every magic shares: resolving names in the notebook, delivering reports.

No measurement happens here; the magics stay a thin layer over the plain Python API.
"""

from __future__ import annotations

import ast
import contextlib
from typing import Any, Iterator

from IPython.core.error import UsageError

from ..core.errors import ElanaError, one_line
from ..core.heap import release_freed_memory

FAILED = "the model failed during the measurement ({error}); nothing was kept"
INTERRUPTED = "interrupted: nothing was kept"


@contextlib.contextmanager
def error_boundary(live: Any = None, *, failed: str = FAILED, interrupted: str = INTERRUPTED) -> Iterator[None]:
    """Every way the block can fail, as one ``UsageError`` line, the live view (if any) emptied first.

    An ``ElanaError`` (bad input, out of memory: every error a user can cause) says its own line; Ctrl-C says
    ``interrupted``; any other exception (the model's own, raised in its forward) says ``failed``, where
    ``{error}`` is its type and first line. A ``UsageError`` passes unchanged; SystemExit and the like too.
    """
    try:
        yield
    except BaseException as exc:
        _drop(live)
        usage = _as_usage_error(exc, failed, interrupted)
        if usage is None:
            raise
        raise usage from None


def literal(text: str) -> str:
    """``text`` as a part of an ``error_boundary`` message template (its braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def _as_usage_error(exc: BaseException, failed: str, interrupted: str) -> UsageError | None:
    if isinstance(exc, UsageError):
        return None
    if isinstance(exc, ElanaError):
        return UsageError(" ".join(str(exc).split()))
    if isinstance(exc, KeyboardInterrupt):
        return UsageError(interrupted)
    if isinstance(exc, Exception):
        return UsageError(failed.format(error=one_line(exc)))
    return None


def is_quoted(expr: str) -> bool:
    expr = expr.strip()
    return len(expr) >= 2 and expr[0] == expr[-1] and expr[0] in "'\""


def unquote(expr: str) -> str:
    return expr.strip()[1:-1] if is_quoted(expr) else expr.strip()


def evaluate(shell, expr: str, what: str = "object") -> Any:
    """Evaluate ``expr`` in the notebook's namespace; a failure becomes a one-line UsageError."""
    expr = expr.strip()
    if not expr:
        raise UsageError(f"no {what} given: pass a name from the notebook, e.g. `model`")
    try:
        return eval(expr, shell.user_global_ns, shell.user_ns)  # noqa: S307 - the user's own notebook
    except NameError as exc:
        raise UsageError(f"{exc}: define it in the notebook first, or quote a local folder / hub id") from None
    except Exception as exc:  # noqa: BLE001 - any error from the user's expression
        raise UsageError(f"could not evaluate {expr!r}: {type(exc).__name__}: {exc}") from None


def require_module(obj: Any, expr: str):
    """Check that ``obj`` is a torch.nn.Module; otherwise a one-line UsageError naming its type."""
    import torch

    if not isinstance(obj, torch.nn.Module):
        raise UsageError(
            f"{expr!r} is {with_article(type(obj).__name__)}, not a torch.nn.Module: pass a loaded model "
            "or a quoted folder / hub id"
        )
    return obj


def resolve_model(shell, expr: str, trust_remote_code: bool = False, quiet: bool = False):
    """A model from the notebook (a name or expression) or, when quoted, loaded: "random:PRESET", a local
    folder or a cached hub id (``loading.load_model``: no download, no custom code without
    ``trust_remote_code``)."""
    from ..loading import load_model

    if is_quoted(expr):
        with error_boundary(failed=literal(f"could not load {expr}: ") + "{error}",
                            interrupted="interrupted while loading the model"):
            return load_model(unquote(expr), download=False, trust_remote_code=trust_remote_code, quiet=quiet,
                              with_tokenizer=False).model
    model = require_module(evaluate(shell, expr, "model"), expr)
    release_freed_memory()  # before measuring too: what the notebook freed since (a replaced copy) leaves first
    return model


def _top_level_spaces(text: str):
    """Indices of the whitespace in ``text`` that lies outside brackets and quotes."""
    depth, quote, i = 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch.isspace() and depth <= 0:
            yield i
        i += 1


def split_model(line: str) -> tuple[str, str]:
    """'f(a, "b c") --batch 2' -> ('f(a, "b c")', '--batch 2'): the model expression may hold spaces;
    it ends at the first option (a space, then '-' and a letter or '-') outside brackets and quotes."""
    text = line.strip()
    for i in _top_level_spaces(text):
        rest = text[i:].lstrip()
        if rest.startswith("-") and len(rest) > 1 and (rest[1].isalpha() or rest[1] == "-"):
            return text[:i].strip(), rest
    if text.startswith("-"):
        return "", text
    return text, ""


def parse_line(magic, line: str):
    """``parse_argstring``, with an unbalanced quote a one-line UsageError (IPython raises ValueError).

    IPython splits a line keeping each value's quotes (the magics unquote the values that take text);
    a backslash before a quote (``--label "it's \\"x\\""``, ``'it'\\''s'``) is read as a shell reads it."""
    from IPython.utils.process import arg_split

    try:
        argv = shell_words(line) if ("\\'" in line or '\\"' in line) else arg_split(line)
    except ValueError as exc:  # shlex: "No closing quotation"
        raise UsageError(f"{exc} in {line.strip()!r}: close the quote, or quote the value with the other quote "
                         "character") from None
    return magic.parser.parse_args(argv)


def shell_words(line: str) -> list[str]:
    """A line split as a POSIX shell splits it; a word that held quotes comes back wrapped in double quotes
    (only the first and last character: ``unquote`` gives the shell's value back), as IPython keeps them."""
    import shlex

    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split, lex.commenters = True, ""
    words = []
    while True:
        start = lex.instream.tell() if hasattr(lex.instream, "tell") else None
        word = lex.get_token()
        if word is None:
            break
        raw = line[start:lex.instream.tell()] if start is not None else word
        quoted = "'" in raw or '"' in raw
        flag, eq, value = word.partition("=")
        if quoted and word.startswith("--") and eq and not any(q in raw.split("=", 1)[0] for q in "'\""):
            words.append(f'{flag}="{value}"')  # --label="a b": the value keeps the quotes
        else:
            words.append(f'"{word}"' if quoted else word)
    return words


def parse_with_model(magic, line: str):
    """``parse_argstring`` for a magic whose first argument is a model expression (see ``split_model``)."""
    expr, options = split_model(line)
    args = parse_line(magic, f"_ {options}" if expr else options)
    if expr:
        args.model = expr
    refuse_measured_var(args, expr, getattr(args, "tokenizer", None) or "")
    return args


def names_in(expr: str) -> set[str]:
    """The notebook names an expression (or several, space-separated) reads: 'f(m) tok' -> {'f', 'm', 'tok'}."""
    names = set()
    for part in split_models(expr):
        try:
            tree = ast.parse(part, mode="eval")
        except SyntaxError:
            continue
        names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return names


def refuse_measured_var(args, *exprs: str) -> None:
    """``-v m`` on the model ``m`` it measures would replace the model with its report: refused."""
    var = getattr(args, "var", None)
    if var and any(var in names_in(e) for e in exprs):
        raise UsageError(f"-v {var} would replace {var!r}, which this measurement reads, with its report: "
                         "pick another name, e.g. -v rep")


def split_models(expr: str) -> list[str]:
    """'a b' -> ['a', 'b']; 'f(a, b)' -> ['f(a, b)']: model expressions split at spaces outside brackets and quotes."""
    parts, start = [], 0
    for i in _top_level_spaces(expr):
        if expr[start:i].strip():
            parts.append(expr[start:i].strip())
        start = i + 1
    if expr[start:].strip():
        parts.append(expr[start:].strip())
    return parts


def deliver(shell, report: Any, args, live: Any = None, record: bool = True) -> Any:
    """Add a report to the kernel's history (``record``), store (-v), show (unless -q) and return
    (-o) it, as %timeit does, with one view per cell.

    The report is shown here as an output of its own, after the live view's place is emptied and its
    widgets closed: a frontend that hides a closed widget's output (JupyterLab, Notebook 7) would
    otherwise hide the report that took that place. When the report is also returned and lands in
    Out[n], its ``_ipython_display_`` sees it was shown in this cell already.
    """
    if record:
        from ..core.history import HISTORY

        HISTORY.add(report)
    if getattr(args, "var", None):
        if not args.var.isidentifier():
            raise UsageError(f"-v needs a valid Python name, got {args.var!r}")
        shell.user_ns[args.var] = report
    if live is not None:
        live.clear()  # before the report shows: the live view's end must not touch the report's output
    release_freed_memory()  # a measurement's temporaries and models the notebook deleted leave the process
    if not getattr(args, "quiet", False):
        from ..core.display import show_report

        show_report(report)
        report.mark_shown()
    return report if getattr(args, "output", False) else None


def _live_view(title: str, quiet: bool):
    """A started live view in a notebook (None under -q or outside a kernel)."""
    from ..core.display import in_widget_frontend

    if quiet or not in_widget_frontend():
        return None
    from ..core.live import LiveView

    return LiveView(title).start()


def _drop(live: Any) -> None:
    """The run failed: stop the live view and empty its place (the error says what happened)."""
    if live is not None:
        live.clear()


def with_article(noun: str) -> str:
    """'int' -> 'an int', 'str' -> 'a str' (by the first letter, which is right for type names)."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"

