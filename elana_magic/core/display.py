"""Notebook display: one mimebundle per report (text, static HTML, widget view), and figure helpers.

Every report is shown as one bundle: ``text/plain`` (the text report), ``text/html`` (tables and plots
as embedded PNGs, for nbconvert, GitHub, a notebook reopened without its kernel) and, inside a Jupyter
kernel, the widget view on top (``application/vnd.jupyter.widget-view+json``).

Figures are ``matplotlib.figure.Figure`` objects, never pyplot: no view touches the backend or leaves
a figure open. ipywidgets and matplotlib are imported lazily so the plain API stays light.
"""

from __future__ import annotations

import base64
import io
import struct
import sys
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DPI = 110  # PNGs are drawn at this dpi and shown at their native pixel size

# One sans-serif font for every line of a report (tables, summary lines, notes), wherever it is shown.
FONT = "system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif"
BLOCK_STYLE = f"font-family:{FONT};font-size:13px;line-height:1.45;color:#1f1f1f"

def in_widget_frontend() -> bool:
    """True inside a Jupyter kernel (ipykernel/Colab), where widgets render; False in a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    if shell is None:
        return False
    return type(shell).__name__ == "ZMQInteractiveShell" or "google.colab" in sys.modules


def html_block(kind: str, inner: str) -> str:
    """The static HTML of a report: one sans-serif block, classed ``elana-report elana-<kind>``."""
    return f"<div class='elana-report elana-{kind}' style=\"{BLOCK_STYLE}\">{inner}</div>"


def report_bundle(report: Any, include=None, exclude=None) -> dict[str, Any]:
    """text/plain + text/html of ``report``, with its widget view on top inside a Jupyter kernel."""
    if include is None:  # what the frontend renders (a terminal: text only, so no plot is drawn for nothing)
        include = _active_types()
    def wanted(mime: str) -> bool:
        return (include is None or mime in include or mime == WIDGET_VIEW) and not (exclude and mime in exclude)
    bundle: dict[str, Any] = {"text/plain": report.to_text()}
    if wanted("text/html"):
        bundle["text/html"] = report.to_html()
    if wanted(WIDGET_VIEW) and in_widget_frontend() and hasattr(report, "widget"):
        try:
            view = report.widget()
        except ImportError:  # ipywidgets missing: text and HTML still show
            view = None
        if view is not None:
            data = view._repr_mimebundle_() or {}
            if WIDGET_VIEW in data:
                bundle[WIDGET_VIEW] = data[WIDGET_VIEW]
    return bundle


def _active_types() -> list[str] | None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    formatter = getattr(shell, "display_formatter", None)
    return list(formatter.active_types) if formatter is not None else None


def show_report(report: Any) -> None:
    """Publish the report's bundle as a new output of the running cell."""
    from IPython.display import display

    display(report_bundle(report), raw=True)


# -- figures --------------------------------------------------------------------------------------

def figure_png(fig, dpi: int = DPI) -> bytes:
    """PNG bytes of a matplotlib Figure (a ``matplotlib.figure.Figure``: nothing to close)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header."""
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def png_img_html(png: bytes, alt: str = "plot") -> str:
    """An inline <img> (base64 PNG) drawn at its native pixel size (scaled down only to fit)."""
    w, h = png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (f"<img class='elana-plot' alt='{alt}' width='{w}' height='{h}' "
            f"style='max-width:100%;height:auto' src='data:image/png;base64,{data}'/>")


def png_widget(png: bytes) -> Any:
    """An ipywidgets Image of a PNG, at its native pixel size (not stretched by its box)."""
    import ipywidgets as widgets

    w, h = png_size(png)
    image = widgets.Image(value=png, format="png", width=str(w), height=str(h),
                          layout=widgets.Layout(width=f"{w}px", max_width="100%", height="auto",
                                                align_self="flex-start"))
    image.add_class("elana-plot")
    return image


def figure_to_widget(fig) -> Any:
    """A matplotlib Figure as an ipywidgets Image (PNG at its native size)."""
    return png_widget(figure_png(fig))


def figure_to_html(fig, alt: str = "plot") -> str:
    """A matplotlib Figure as an inline <img> (base64 PNG) at its native size."""
    return png_img_html(figure_png(fig), alt=alt)


def notes_html(notes: list[str], warnings: list[str] | None = None) -> str:
    """Warnings in view, notes folded under one "notes (N)" line (a <details>: opens offline, in widgets
    and in static HTML alike), in the report's font."""
    import html

    out = "".join(f"<div class='elana-warning' style='color:#a33'>{_warning_label(w)}{html.escape(w)}</div>"
                  for w in warnings or [])
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        out += (f"<details class='elana-notes' style=\"{BLOCK_STYLE};color:#555;margin:4px 0\">"
                f"<summary style='cursor:pointer'>notes ({len(notes)})</summary>"
                f"<ul style='margin:2px 0 4px 0;padding-left:20px'>{items}</ul></details>")
    return out


def _warning_label(text: str) -> str:
    return "" if text.startswith(("warning:", "error:", "interrupted:")) else "warning: "


def html_widget(html: str) -> Any:
    """An ipywidgets HTML holding ``html`` in the report font."""
    import ipywidgets as widgets

    return widgets.HTML(f"<div style=\"{BLOCK_STYLE}\">{html}</div>")


# Widget chrome (labels, dropdowns, tab titles) in the report font; tab titles as wide as their text.
REPORT_CSS = ("<style>.elana-report .widget-label, .elana-report .widget-label-basic, .elana-report select,"
              " .elana-report .lm-TabBar-tab, .elana-report .p-TabBar-tab {font-family:" + FONT + "; font-size:13px}"
              " .elana-report .lm-TabBar-tab, .elana-report .p-TabBar-tab {flex: 0 0 auto !important;"
              " min-width: 0 !important; max-width: none !important; width: auto !important}</style>")


def report_view(kind: str, children: list) -> Any:
    """The widget view of a report: a VBox classed ``elana-report elana-<kind>``."""
    import ipywidgets as widgets

    style = widgets.HTML(REPORT_CSS, layout=widgets.Layout(height="0px", margin="0px"))
    box = widgets.VBox([*children, style])
    box.add_class("elana-report")
    box.add_class(f"elana-{kind}")
    return box
