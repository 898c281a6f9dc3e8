"""Answer checks for the teaching notebooks: one line of feedback, never an exception, never the answer.

In a notebook::

    from elana_magic import lesson
    lesson.check("answer_1", answer_1, expected, rel_tol=1e-6, hints={"units": "TPOT is in ms"})

prints ``fill in answer_1 above`` for a blank (``...``), ``correct: ...`` for a right answer, and otherwise a hint
at what is wrong (units off by 1e3 or 1e6, a ratio upside down, a float or negative length, off by one, too high
or too low) that never shows the expected value. ``lesson.load_solution(3)`` puts exercise 3's solution from
``solutions/<notebook>.py`` into the current cell, as ``%load`` does.
"""

from __future__ import annotations

import math
import numbers
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

Kind = Literal["number", "ratio", "length"]
Message = str | Callable[[], str]

_UNIT_POWERS = (3, -3, 6, -6, 9, -9)
_NEAR = 0.02  # how close, in decades (about 5 %), a slip must come to count as one

HINTS: dict[str, str] = {
    "blank": "fill in {name} above",
    "type": "{name} should be a number, got {got}",
    "finite": "{name} should be a finite number, got {got}",
    "whole": "{name} is a length: a whole number of tokens, not {got} (use // or int(), and round the right way)",
    "negative": "{name} is a length: it cannot be negative",
    "units": "{name} is off by {factor}: check the units (ms or s? bytes, MB or GB?)",
    "inverted": "{name} looks upside down: swap the numerator and the denominator",
    "off_by_one": "{name} is off by one: the first length where it holds is one {side} (check > against >=, or a +1)",
    "high": "not yet: {name} is too high",
    "low": "not yet: {name} is too low",
}


def check(name: str, answer: Any, expected: float, *, rel_tol: float = 1e-6, kind: Kind = "number",
          hints: Mapping[str, str] | None = None, correct: Message = "") -> bool:
    """Print one line of feedback on `answer` and return whether it matches `expected`.

    kind: "number" (any real number), "ratio" (a number that can also be upside down) or "length" (a whole,
    non-negative number of tokens, compared exactly). hints: texts that replace those of `HINTS`, by key; they may
    use {name}. correct: the text printed after "correct: ", or a function that returns it (called only when the
    answer is right, so it may format the answer). Never raises; no hint shows the expected value.
    """
    try:
        mistake, fields = _judge(answer, float(expected), rel_tol, kind)
        if mistake is None:
            line = "correct: " + _message(correct)
        else:
            line = {**HINTS, **(hints or {})}[mistake].format(name=name, **fields)
    except Exception as exc:  # noqa: BLE001 - a check must never stop the lesson
        mistake, line = "error", f"could not check {name}: {type(exc).__name__}"
    print(line)
    return mistake is None


def _judge(answer: Any, expected: float, rel_tol: float, kind: Kind) -> tuple[str | None, dict[str, str]]:
    """The key of the mistake in HINTS (None when right) and the fields its text uses."""
    if answer is Ellipsis:
        return "blank", {}
    value = _as_number(answer)
    if value is None:
        return "type", {"got": f"a {type(answer).__name__}"}
    if not math.isfinite(value):
        return "finite", {"got": str(value)}
    if kind == "length":
        if not _is_whole(answer):
            return "whole", {"got": f"a {type(answer).__name__}"}
        if value < 0:
            return "negative", {}
        if value == expected:
            return None, {}
        if abs(value - expected) == 1:
            return "off_by_one", {"side": "smaller" if value > expected else "larger"}
    elif math.isclose(value, expected, rel_tol=rel_tol):
        return None, {}
    return _slip(value, expected, kind)


def _slip(value: float, expected: float, kind: Kind) -> tuple[str, dict[str, str]]:
    if value * expected > 0:
        decades = math.log10(value / expected)
        for power in _UNIT_POWERS:
            if abs(decades - power) < _NEAR:
                return "units", {"factor": f"a factor of 1e{abs(power)} ({'too large' if power > 0 else 'too small'})"}
        if kind == "ratio" and abs(math.log10(value * expected)) < _NEAR and abs(decades) > 2 * _NEAR:
            return "inverted", {}
    return ("high" if value > expected else "low"), {}


def _as_number(answer: Any) -> float | None:
    if isinstance(answer, (bool, str, bytes)):
        return None
    if isinstance(answer, numbers.Real):
        return float(answer)
    try:  # a 0-d array or tensor; a Series or a list is not one number
        return float(answer) if getattr(answer, "ndim", None) == 0 else None
    except (TypeError, ValueError):
        return None


def _is_whole(answer: Any) -> bool:
    if isinstance(answer, numbers.Integral):
        return True
    dtype = getattr(answer, "dtype", None)  # a 0-d integer array or tensor
    return dtype is not None and not getattr(dtype, "is_floating_point", False) and "int" in str(dtype)


def _message(correct: Message) -> str:
    try:
        return correct() if callable(correct) else str(correct)
    except Exception:  # noqa: BLE001 - the answer was right; say so plainly
        return "(well done)"


def first_length(holds: Callable[[int], bool], hi: int) -> int:
    """The smallest n in [1, hi] for which `holds(n)` is true, by bisection (`holds` must be monotone)."""
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


# ------------------------------------------------------------------------------------------------ solutions

_BLOCK = re.compile(r"^# exercise (\d+)\s*$", re.MULTILINE)


def solution_blocks(path: str | pathlib.Path) -> dict[int, str]:
    """The `# exercise N` blocks of a solutions file, by N (each block without its header line)."""
    text = pathlib.Path(path).read_text()
    heads = list(_BLOCK.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return {int(h.group(1)): text[h.end():end].strip("\n") + "\n" for h, end in zip(heads, ends)}


def solutions_path(notebook: str) -> pathlib.Path:
    """solutions/<notebook>.py next to the notebook (the working folder), else in the project's notebooks/."""
    here = pathlib.Path("solutions", f"{notebook}.py")
    if here.exists():
        return here
    return pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "solutions" / f"{notebook}.py"


def load_solution(exercise: int, notebook: str = "03-teaching-efficiency") -> None:
    """Put exercise N's solution into the current cell (as %load does: run the cell again to use it)."""
    path = solutions_path(notebook)
    try:
        block = solution_blocks(path)[exercise]
    except (OSError, KeyError):
        print(f"no solution for exercise {exercise} in {path}")
        return
    shell = _ipython()
    if shell is None:
        print(block, end="")
    else:
        shell.set_next_input(f"# exercise {exercise}, from {path}\n{block}", replace=True)


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
