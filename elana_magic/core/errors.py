"""The one base of every error a user can cause, and the one way a foreign exception is shown in one line.

Each measurement keeps its own error class (``SizeError``, ``ModelLoadError``, ``GenerationInputError``, ...),
a subclass of ``ElanaError``: the magics turn any of them into one ``UsageError`` line
(``magics._common.error_boundary``) and the command into one line on stderr with ``exit_status``.
"""

from __future__ import annotations


class ElanaError(Exception):
    """Bad input, or a measurement that cannot go on, said in one line that tells what to do."""

    exit_status = 2  # the shell command's exit status: bad input


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``: how a foreign exception is shown to the user."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
