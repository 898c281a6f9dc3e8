"""One bundle per report (text, HTML with tables and plots), shown once per cell; figures never touch pyplot."""

from __future__ import annotations

import os
import subprocess
import sys

from IPython.utils.capture import capture_output

from elana_magic.core.display import png_size
from elana_magic.size import measure_size


def test_bundle_is_text_and_html_with_the_plot_outside_a_kernel(tiny_llama):
    rep = measure_size(tiny_llama, batch=[1], seq_len=[16], cross_check=False)
    bundle = rep._repr_mimebundle_(include=["text/plain", "text/html", "application/vnd.jupyter.widget-view+json"])
    assert set(bundle) == {"text/plain", "text/html"}  # no widget outside a Jupyter kernel
    assert bundle["text/plain"] == rep.to_text()
    html = bundle["text/html"]
    assert "<table" in html and "data:image/png;base64," in html and "elana-report elana-size" in html


def test_size_chart_units_follow_the_data_and_png_is_its_native_size(tiny_llama):
    rep = measure_size(tiny_llama, batch=[1], seq_len=[16], cross_check=False)
    fig = rep.figure()
    assert fig.axes[0].get_ylabel() == "kB"  # a ~0.56 MB model: kB, not 0.0006 GB
    top = max(p.get_y() + p.get_height() for p in fig.axes[0].patches)
    assert fig.axes[0].get_ylim()[1] > 1.1 * top  # headroom above the tallest bar
    html = rep.to_html()
    w = int(html.split("width='")[1].split("'")[0])
    assert 300 < w < 1000  # drawn at its native size, about a notebook's width


def test_magic_shows_the_report_once_per_cell(ip, tiny_llama):
    ip.user_ns["m"] = tiny_llama
    with capture_output() as cap:
        rep = ip.run_line_magic("elana_size", "m --seq-len 8 -o")
        ip.displayhook(rep)  # what `-o` as the last line of the cell does next
    assert len(cap.outputs) == 1
    ip.execution_count += 1  # a later cell
    with capture_output() as cap:
        ip.displayhook(rep)
    assert len(cap.outputs) == 1 and "<table" in cap.outputs[0].data["text/html"]


def test_views_leave_matplotlib_alone():
    """Building every view imports no pyplot and sets no backend (a fresh interpreter proves it)."""
    code = """
import sys, matplotlib
backend = matplotlib.rcParams._get_backend_or_none()
from elana_magic.models import random_model
from elana_magic.size import measure_size
rep = measure_size(random_model("tiny-llama"), batch=[1, 2], seq_len=[16], cross_check=False)
rep.figure(); rep.to_html(); rep.widget(); rep._repr_mimebundle_()
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
assert matplotlib.rcParams._get_backend_or_none() == backend, "backend changed"
print("ok")
"""
    env = {**os.environ, "MPLBACKEND": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_text_only_frontend_gets_text_only(ip, tiny_llama):
    rep = measure_size(tiny_llama, batch=[1], seq_len=[16], cross_check=False)
    ip.display_formatter.active_types = ["text/plain"]  # a terminal: no plot drawn for nothing
    assert set(rep._repr_mimebundle_()) == {"text/plain"}


def test_png_size_reads_the_header():
    import matplotlib.figure

    from elana_magic.core.display import figure_png

    fig = matplotlib.figure.Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1])
    w, h = png_size(figure_png(fig))
    assert 150 < w < 260 and 70 < h < 140


def test_release_freed_memory_returns_a_freed_block_to_the_os():
    """200 MB freed below a live block stay resident in glibc's heap (gc alone gives back nothing) until
    malloc_trim."""
    import sys

    import pytest
    import torch

    from elana_magic.core.heap import release_freed_memory
    from elana_magic.latency.memory import resident_bytes

    if not sys.platform.startswith("linux") or resident_bytes() is None:
        pytest.skip("Linux /proc and glibc only")
    pieces = [torch.ones(25_000) for _ in range(2000)]  # 100 kB each: below glibc's mmap threshold
    pin = [torch.ones(25_000) for _ in range(3)]  # above them in the heap: its top can't shrink by itself
    held = resident_bytes()
    del pieces
    release_freed_memory()
    assert resident_bytes() < held - 100e6
    del pin
