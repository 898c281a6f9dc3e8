"""Notebook views: choose between an ipywidgets view and plain text/HTML, and shared plot helpers.

ipywidgets and matplotlib are imported lazily so the plain API stays light.
"""

from __future__ import annotations

import sys
from typing import Any


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


def display_report(report: Any) -> None:
    """Show a report: its widget view in a notebook when it has one, else its text/HTML repr."""
    from IPython.display import display

    if in_widget_frontend() and hasattr(report, "widget"):
        try:
            display(report.widget())
            return
        except ImportError:
            pass  # ipywidgets/matplotlib missing: fall back to the HTML table
    display(report)


def figure_to_widget(fig) -> Any:
    """A matplotlib figure as an ipywidgets Image (PNG), closing the figure so nothing leaks."""
    import io

    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return widgets.Image(value=buf.getvalue(), format="png")


def figure_to_html(fig) -> str:
    """A matplotlib figure as an inline <img> (base64 PNG), closing the figure."""
    import base64
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}'/>"
