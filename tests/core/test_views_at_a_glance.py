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
