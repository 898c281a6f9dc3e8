"""Views a user reads at a glance: one unit per column, notes folded, no memory line that says nothing."""

from __future__ import annotations

from elana_magic.core.display import notes_html
from elana_magic.core.report import html_table
from elana_magic.core.units import column_formatter, energy_column
from elana_magic.latency.grid import _bar
from elana_magic.latency.report import memory_lines


def test_a_column_keeps_one_unit():
    f = column_formatter([0.628, 0.068, 0.155])
    assert [f(v) for v in (0.628, 0.068)] == ["628 ms", "68 ms"]
    f = column_formatter([2.5, 0.008])  # seconds would show 0.008 s: the column reads in ms
    assert f(2.5) == "2500 ms" and f(0.008) == "8 ms"
    assert column_formatter([12.0, 3.0])(12.0) == "12 s"
    assert energy_column([3.357, 0.6143])(0.6143) == "0.6143 J" and energy_column([None])(None) == "-"


def test_notes_fold_under_one_line_and_warnings_stay_in_view():
    out = notes_html(["first", "second <b>"], warnings=["clocks differ"])
    assert "<summary" in out and "notes (2)" in out and "&lt;b&gt;" in out
    assert out.index("warning: clocks differ") < out.index("<details")
    assert notes_html([]) == ""


def test_tables_wrap_words_and_keep_numbers_whole():
    table = html_table(["figure", "verdict", "ratio"], [["TPOT", "TPOT 12% lower (95% CI 10-14%)", "0.88"]])
    assert "max-width:100%" in table
    assert table.count("white-space:normal") >= 2 and "white-space:nowrap" in table


def _phase(diff: int) -> dict:
    return {"phase": "decode", "measured_kind": "resident", "analytic_cache_bytes": 1_000_000,
            "analytic_model_bytes": 500_000_000, "analytic_bytes": 501_000_000, "compared_bytes": 1_000_000,
            "measured_peak_bytes": 1_000_000 + diff, "activation_bytes": diff, "context": 40}


def test_cpu_memory_lines_only_when_they_say_something():
    assert memory_lines({"phases": [_phase(-300_000)], "method": "peak RSS"}) == []
    lines = memory_lines({"phases": [_phase(-300_000), _phase(2_000_000)], "method": "peak RSS"})
    assert len(lines) == 2 and "activations and workspace" in lines[0] and lines[1].endswith("peak RSS")


def test_no_grid_bar_in_a_notebook():
    class Live:
        def phase(self, *a, **k):
            return self

    assert _bar(4, Live()) is None and _bar(4, False) is None
    bar = _bar(4, True)
    assert bar is not None and bar.leave is False
    bar.close()


def test_a_warning_already_named_keeps_its_own_word():
    out = notes_html([], warnings=["error: sensor lost", "clocks differ"])
    assert "warning: error" not in out and "error: sensor lost" in out and "warning: clocks differ" in out


def test_cpu_memory_growth_below_noise_says_nothing():
    tiny = {**_phase(0), "measured_peak_bytes": 4096, "compared_bytes": 0, "activation_bytes": 4096}
    assert memory_lines({"phases": [tiny], "method": "peak RSS"}) == []


def _grid(notes: list[str], peaks: list[int], tpot=(56.0, 52.0, 60.0)):
    from elana_magic.latency.grid import LatencyGridReport

    med, lo, hi = tpot
    cells = [{"batch": b, "prompt_len": 16, "gen_len": 8, "status": "ok", "engine": "eager",
              "ttft_ms": 24.0 * b, "ttlt_ms": 400.0 + 900 * b, "tpot_ms": med, "tpot_ci95_low_ms": lo,
              "tpot_ci95_high_ms": hi, "peak_memory_bytes": peak, "j_per_prompt": None, "j_per_token": None,
              "j_per_request": None, "tokens_per_s": 17.9, "tokens_per_j": None, "mbu": None, "mfu": None}
             for b, peak in zip((1, 2), peaks)]
    data = {"label": None, "model": "Tiny", "device_name": "x86_64", "batch": [1, 2], "prompt_len": [16],
            "gen_len": [8], "phases": ["ttft", "tpot", "ttlt"], "cells": cells,
            "largest_batch_that_fit": [], "engines": ["eager"], "time_to_result_s": 1.0, "notes": notes}
    return LatencyGridReport(data, [None, None])


def test_grid_columns_keep_one_unit_and_a_note_alike_shows_once():
    grid = _grid(["no sensor", "TPOT is noisy: CI (51.9-56.1 ms) is 7%", "TPOT is noisy: CI (52.0-56.0 ms) is 7%"],
                 [4096, 118_784])
    header, rows = grid._table()
    assert "J/token" not in header and "MBU" not in header  # nothing known: no empty column
    ttlt, peak = header.index("TTLT"), header.index("peak mem")
    assert len({r[ttlt].split()[-1] for r in rows}) == 1 and {r[peak].split()[-1] for r in rows} == {"kB"}
    notes = grid._notes()
    assert len(notes) == 2 and notes[1].endswith("(and 1 more cell alike)")
    html = grid.to_html()
    assert html.count("TPOT is noisy") == 1 and "notes (2)" in html and "<i>" not in html
    assert "elana-report elana-latency-grid" in html and "table class='elana-table'" in html


def test_grid_shows_a_wide_interval_as_its_ends():
    header, rows = _grid([], [1, 2], tpot=(56.0, 10.0, 310.0))._table()
    cell = rows[0][header.index("TPOT")]
    assert "±" not in cell and "10 ms-310 ms" in cell


def test_grid_dataframe_holds_numbers():
    df = _grid([], [4096, 8192]).to_dataframe()
    for col in ("ttft_ms", "tpot_ms", "tpot_ci95_low_ms", "ttlt_ms", "peak_memory_bytes", "tokens_per_s"):
        assert df[col].dtype.kind in "fi", col
