"""How a measurement reports progress: three calls, whoever shows them.

The runners call ``phase(name, power=None)`` when a phase starts (``power()``: the power series read so far,
where a sensor exists), ``update(n)`` after each repetition and ``close()`` when the phase's repetitions end.
They never build a view: the magics pass their live view (``core.live.LiveView`` answers the same calls);
``progress=True`` is a tqdm bar in a terminal and nothing in a notebook (a text bar would stay in the saved
output); ``False`` is nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

PowerSeries = Callable[[], "list[tuple[str, list[float], list[float]]]"]


@runtime_checkable
class Progress(Protocol):
    def phase(self, name: str, power: PowerSeries | None = None) -> Any: ...

    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


def terminal_bar(desc: str, unit: str, total: int | None = None) -> Any:
    """A tqdm bar in a terminal (after 2 s), or None in a notebook or without tqdm."""
    from .display import in_widget_frontend

    if in_widget_frontend():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(desc=desc, unit=unit, total=total, delay=2.0, leave=False)


class TerminalProgress:
    """``Progress`` as one terminal bar per phase ("elana TPOT: 37 run")."""

    def __init__(self) -> None:
        self._bar: Any = None

    def phase(self, name: str, power: PowerSeries | None = None) -> "TerminalProgress":
        self.close()
        self._bar = terminal_bar(f"elana {name}", "run")
        return self

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def as_progress(progress: Any) -> Progress | None:
    """A ``Progress`` -> itself; another true value -> a ``TerminalProgress``; ``False``/``None`` -> None."""
    if isinstance(progress, Progress):
        return progress
    return TerminalProgress() if progress else None
