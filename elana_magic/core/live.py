"""The live view: while a long measurement runs, which phase is running and the power trace growing.

One display slot in the notebook, redrawn a few times a second by a daemon thread named
``elana-live`` from what the measurement already records (a run counter bumped between repetitions,
the energy sampler's power series); nothing runs on the measured path but an integer increment.
When the measurement ends the slot is emptied and its widgets closed, and the report is shown as
an output of its own (``deliver``): in JupyterLab a closed widget hides the output that showed it,
so the report never takes the live view's place.
The thread is stopped and joined on every exit, errors and Ctrl-C included.

Outside a Jupyter kernel (terminal, scripts, the benchmark) the same thread runs but displays nothing.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any, Callable

from .display import BLOCK_STYLE, in_widget_frontend

POWER_SVG = (520, 90)  # px


class LiveView:
    """``with LiveView("elana latency") as live: live.phase("TPOT", power=win.power_so_far); live.update()``"""

    def __init__(self, title: str, interval_s: float = 0.5, show: bool | None = None) -> None:
        self.title = title
        self.interval_s = max(0.2, float(interval_s))  # a few updates a second at most
        self.show = in_widget_frontend() if show is None else show
        self.handle: Any = None
        self.redraws = 0
        self._phase: str | None = None
        self._phases_done: list[str] = []
        self._runs = 0
        self._power: Callable[[], list[tuple[str, list[float], list[float]]]] | None = None
        self._t0 = time.perf_counter()
        self._phase_t0 = self._t0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = self._plot = self._box = None

    # -- what the measurement calls (cheap: no drawing here) --
    def phase(self, name: str, power: Callable[[], list[tuple[str, list[float], list[float]]]] | None = None):
        """A new phase starts; ``power()`` returns (sensor, t, W) series read so far, when a sensor exists."""
        if self._phase is not None:
            self._phases_done.append(self._phase)
        self._phase, self._power, self._runs = name, power, 0
        self._phase_t0 = time.perf_counter()
        return self

    def update(self, n: int = 1) -> None:
        """One more repetition done (the tqdm-like call the repetition loop makes)."""
        self._runs += n

    def close(self) -> None:
        """End of a phase's repetitions (tqdm-like; the view itself lives until ``stop``)."""

    # -- lifetime --
    def start(self) -> "LiveView":
        import ipywidgets as widgets

        self._status = widgets.HTML(self._status_html())
        self._plot = widgets.HTML("")
        self._box = widgets.VBox([self._status, self._plot])
        self._box.add_class("elana-live")
        if self.show:
            from IPython.display import display

            bundle = {**self._box._repr_mimebundle_(), "text/plain": f"{self.title}: running"}
            self.handle = display(bundle, raw=True, display_id=True)
        self._thread = threading.Thread(target=self._loop, name="elana-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and join the thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def clear(self, text: str = "") -> None:
        """Stop, empty the display slot (or leave ``text`` there), then close the widgets.

        The slot is updated first: a text output replaces the widget's renderer, so closing the widget
        afterwards hides nothing (JupyterLab hides an output whose widget view is disposed)."""
        self.stop()
        if self.handle is not None:
            self.handle.update({"text/plain": text}, raw=True)
            self.handle = None
        self.close_widgets()

    def close_widgets(self) -> None:
        for w in (self._status, self._plot, self._box):
            if w is not None:
                w.close()
        self._status = self._plot = self._box = None

    def __enter__(self) -> "LiveView":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc_type is not None:
            where = f" during {self._phase}" if self._phase else ""
            self.clear(f"{self.title}: stopped{where} ({exc_type.__name__})")

    # -- drawing, on the elana-live thread --
    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.redraw()

    def redraw(self) -> None:
        if self._status is None:
            return
        self._status.value = self._status_html()
        series = self._power() if self._power is not None else []
        if series:
            self._plot.value = power_svg(series)
        self.redraws += 1

    def _status_html(self) -> str:
        now = time.perf_counter()
        done = "".join(f"<span style='color:#2a7a2a'>✓ {html.escape(p)}</span> &nbsp;" for p in self._phases_done)
        current = ""
        if self._phase is not None:
            current = (f"<b>{html.escape(self._phase)}</b> running: {self._runs} run(s) in "
                       f"{now - self._phase_t0:.1f} s")
        return (f"<div class='elana-live-status' style=\"{BLOCK_STYLE}\"><b>{html.escape(self.title)}</b>"
                f" &nbsp;{done}{current} &nbsp;<span style='color:#777'>({now - self._t0:.0f} s)</span></div>")


def power_svg(series: list[tuple[str, list[float], list[float]]]) -> str:
    """A small inline SVG of power over time (one line per sensor): cheap to build, no matplotlib."""
    w, h = POWER_SVG
    pad_l, pad_b, pad_t = 44, 16, 8
    pts = [(name, t, p) for name, t, p in series if len(t) >= 2]
    if not pts:
        return ""
    t0 = min(t[0] for _, t, _ in pts)
    t1 = max(t[-1] for _, t, _ in pts)
    top = max(max(p) for _, _, p in pts) * 1.15 or 1.0
    span = max(t1 - t0, 1e-6)
    colors = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    lines = []
    for i, (name, t, p) in enumerate(pts):
        step = max(1, len(t) // 400)  # at most ~400 points per line
        coords = " ".join(f"{pad_l + (x - t0) / span * (w - pad_l - 4):.1f},{pad_t + (1 - y / top) * (h - pad_t - pad_b):.1f}"
                          for x, y in zip(t[::step], p[::step]))
        lines.append(f"<polyline fill='none' stroke='{colors[i % 4]}' stroke-width='1.3' points='{coords}'/>")
        lines.append(f"<text x='{w - 6}' y='{pad_t + 10 + 12 * i}' text-anchor='end' font-size='10' "
                     f"fill='{colors[i % 4]}'>{html.escape(name)} {p[-1]:.0f} W</text>")
    axis = (f"<line x1='{pad_l}' y1='{h - pad_b}' x2='{w - 4}' y2='{h - pad_b}' stroke='#999'/>"
            f"<text x='{pad_l - 4}' y='{pad_t + 8}' text-anchor='end' font-size='10'>{top:.0f} W</text>"
            f"<text x='{pad_l - 4}' y='{h - pad_b}' text-anchor='end' font-size='10'>0</text>"
            f"<text x='{w - 4}' y='{h - 3}' text-anchor='end' font-size='10'>{span:.1f} s</text>")
    return (f"<svg class='elana-live-power' width='{w}' height='{h}' style='font-family:sans-serif'>"
            f"{axis}{''.join(lines)}</svg>")
