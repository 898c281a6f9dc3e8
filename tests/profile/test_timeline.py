"""The kernel timeline: lanes per stream, bounded drawing cost, zoom, phase shading, the widget."""

from __future__ import annotations

import json

import pytest
from matplotlib.collections import PolyCollection

from elana_magic.profile import ParsedTrace, analyze_trace
from elana_magic.profile.timeline import KIND_COLORS, Timeline, draw_timeline, short_phase_name, timeline_widget


@pytest.fixture(scope="module")
def big(synthetic_trace):
    return ParsedTrace.from_events(synthetic_trace(20_000)["traceEvents"])


def _bars(tl: Timeline) -> list[PolyCollection]:
    return [a for a in tl._artists if isinstance(a, PolyCollection)]


def _lane_bars(tl: Timeline, lane: int) -> int:
    """Rectangles drawn in one lane (bars are centred on the lane index)."""
    n = 0
    for c in _bars(tl):
        for p in c.get_paths():
            if abs(p.vertices[:, 1].mean() - lane) < 0.4:
                n += 1
    return n


def test_one_lane_per_stream_sorted_numerically(big):
    tl = Timeline(big)
    assert tl.lane_names == ["GPU 0 stream 7", "GPU 0 stream 20"]


def test_drawing_cost_is_bounded_by_pixels_not_events(big):
    tl = Timeline(big)
    drawn = sum(len(c.get_paths()) for c in _bars(tl))
    assert len(_bars(tl)) <= 2 * 6  # at most one collection per (lane, kind)
    assert drawn < 2 * tl.ax.bbox.width + 200  # 20,000 kernels, about one bar per pixel column at most
    assert 0 < drawn < len(big.device) / 5


def test_zoom_shows_individual_kernels(big):
    tl = Timeline(big)
    cols = big.columns("device")
    t0 = cols.ts.min()
    a, b = 0.100, 0.150  # ms: every kernel here is many pixels wide
    tl.set_range(a, b)
    start, end = (cols.ts - t0) / 1e3, (cols.end - t0) / 1e3
    expected = int(((end >= a) & (start <= b) & (cols.lane_id == cols.lanes.index((0, 7)))).sum())
    assert _lane_bars(tl, 0) == expected
    assert tl.ax.get_xlim() == (a, b)
    assert tl._repr_png_().startswith(b"\x89PNG")


def test_sub_pixel_kernels_take_the_busiest_kind():
    k = [{"ph": "X", "cat": "kernel", "pid": 0, "tid": 7, "ts": ts, "dur": d, "name": n}
         for ts, d, n in [(0, 1, "gemm_a"), (1, 1, "gemm_b"), (2, 1, "gemm_c"), (3, 2, "flash_fwd"), (10_000, 1, "gemm_a")]]
    tl = Timeline(ParsedTrace.from_events(k))
    colours = {tuple(c.get_facecolor()[0]) for c in _bars(tl)}
    from matplotlib.colors import to_rgba

    assert to_rgba(KIND_COLORS["matmul"]) in colours
    assert to_rgba(KIND_COLORS["attention"]) not in colours  # 2 µs of attention < 3 µs of matmul in that pixel


def test_phases_shaded_and_labelled(synthetic_trace):
    trace = ParsedTrace.from_events(synthetic_trace(1_000)["traceEvents"])
    rep = analyze_trace("synthetic", trace=trace, hta=False)
    tl = Timeline(trace, spans=rep.steps)
    assert len(tl.phases) == 5
    labels = [t.get_text().strip() for t in tl.ax.texts]
    assert labels == [f"step {i}" for i in range(5)]
    assert short_phase_name("elana:prefill[2]") == "prefill 2"
    # without the report's spans, Kineto's gpu_user_annotation ranges place the phases
    assert [p[0] for p in Timeline(trace).phases] == [f"elana:decode_step[{i}]" for i in range(5)]


def test_cpu_trace_lanes_show_top_level_ops():
    ops = [{"ph": "X", "cat": "cpu_op", "pid": 1, "tid": 9, "ts": 0, "dur": 100, "name": "aten::linear"},
           {"ph": "X", "cat": "cpu_op", "pid": 1, "tid": 9, "ts": 10, "dur": 80, "name": "aten::mm"},
           {"ph": "X", "cat": "cpu_op", "pid": 1, "tid": 9, "ts": 120, "dur": 10, "name": "aten::mul"}]
    tl = Timeline(ParsedTrace.from_events(ops))
    assert tl.lane_names == ["CPU thread 9"]
    assert _lane_bars(tl, 0) == 2  # aten::mm is inside aten::linear
    assert "CPU operator timeline" in tl.ax.get_title(loc="left")


def test_empty_trace_says_so(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"traceEvents": []}))
    fig = draw_timeline(str(path))
    assert "no kernels or operators" in fig.axes[0].texts[0].get_text()


def test_widget_zooms_without_a_kernel(synthetic_trace):
    """Pre-rendered windows in a Stack, picked by buttons through a frontend link (jslink): no Python
    callback, so the zoom still works in exported HTML."""
    import ipywidgets as widgets

    trace = ParsedTrace.from_events(synthetic_trace(2_000)["traceEvents"])
    rep = analyze_trace("synthetic", trace=trace, hta=False)
    box = timeline_widget(trace, spans=rep.steps)
    buttons, stack = box.children
    assert isinstance(stack, widgets.Stack) and stack.selected_index == 0
    assert list(buttons.options) == ["whole trace", "step 0", "step 1", "step 2", "step 3"]
    assert len(stack.children) == len(buttons.options) == len(box.windows)
    link = box.link
    assert link._model_name == "LinkModel"  # a frontend link, not a Python observer
    assert link.source == (buttons, "index") and link.target == (stack, "selected_index")
    images = [bytes(page.children[0].value) for page in stack.children]
    assert len(set(images)) == len(images) and all(png.startswith(b"\x89PNG") for png in images)
    for (name, a, b), page in zip(box.windows, stack.children):
        readout = page.children[1]
        assert "elana-range" in readout._dom_classes
        assert readout.value == f"{a:.3f} – {b:.3f} ms"
    (_, a, b), (_, s, t, *_) = box.windows[2], [(n, s, t) for n, s, t in box.timeline.phases][1]
    assert a <= s and b >= t and b - a < (box.windows[0][2] - box.windows[0][1]) / 2


def test_widget_without_phases_zooms_to_quarters():
    k = [{"ph": "X", "cat": "kernel", "pid": 0, "tid": 7, "ts": ts, "dur": 5, "name": "gemm"} for ts in range(0, 400, 10)]
    box = timeline_widget(ParsedTrace.from_events(k))
    buttons, _ = box.children
    assert list(buttons.options) == ["whole trace"] + [f"quarter {i}" for i in range(1, 5)]


def test_empty_trace_widget_has_no_dead_control(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"traceEvents": []}))
    box = timeline_widget(str(path))
    (stack,) = box.children
    assert len(stack.children) == 1


def test_report_widget_has_header_timeline_and_tabs(tmp_path, synthetic_trace):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(synthetic_trace(500)))
    rep = analyze_trace(str(path), hta=False)
    header, timeline, tabs, _style = rep.widget().children
    assert "ui.perfetto.dev" in header.value
    assert hasattr(timeline, "timeline")
    titles = [tabs.get_title(i) for i in range(len(tabs.children))]
    assert titles[:2] == ["Breakdown by kind", "Top GPU kernels"]  # short enough for a tab
    assert "Breakdown by kind (GPU kernel time)" in tabs.children[0].value  # the full title: its caption
