"""The live view: a daemon thread named elana-live redraws the phase and the power trace, and is
stopped and joined on every exit."""

from __future__ import annotations

import threading
import time

import pytest

from elana_magic.core.live import LiveView, power_svg


def _live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "elana-live"]


def test_redraws_phase_and_power_then_stops():
    t0 = time.perf_counter()
    series = [("GPU 0", [t0, t0 + 0.1, t0 + 0.2], [100.0, 250.0, 240.0])]
    with LiveView("elana latency", interval_s=0.2, show=False) as live:
        assert [t.daemon for t in _live_threads()] == [True]
        live.phase("TTFT")
        live.update()
        live.phase("TPOT", power=lambda: series)
        live.update(3)
        time.sleep(0.5)
        status, plot = live._status.value, live._plot.value
    assert not _live_threads()
    assert live.redraws >= 1
    assert "✓ TTFT" in status and "<b>TPOT</b> running: 3 run(s)" in status
    assert "<svg" in plot and "GPU 0 240 W" in plot


def test_stopped_and_joined_on_errors_and_ctrl_c():
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with LiveView("x", interval_s=0.2, show=False) as live:
                live.phase("TPOT")
                raise exc
        assert not _live_threads()


def test_power_svg_thins_long_series():
    n = 10_000
    svg = power_svg([("rail", [i / 50 for i in range(n)], [50.0] * n)])
    assert svg.count(",") <= 2 * 401 + 10  # at most ~400 points per line
    assert power_svg([("rail", [0.0], [1.0])]) == ""  # nothing to draw yet


def test_measure_latency_reports_phases_into_the_live_view(tiny_llama):
    from elana_magic.latency import measure_latency

    live = LiveView("elana latency", interval_s=0.2, show=False).start()
    try:
        measure_latency(tiny_llama, phases=("ttft", "tpot"), prompt_len=8, gen_len=3, energy=False,
                        warmup=1, repeats=2, min_time=0.0, progress=live, shared_runs=False)
    finally:
        live.stop()
    assert live._phases_done == ["TTFT warm-up", "TTFT", "TPOT warm-up"] and live._phase == "TPOT"
    assert live._runs >= 2


def test_shared_runs_report_one_loop_into_the_live_view(tiny_llama):
    from elana_magic.latency import measure_latency

    live = LiveView("elana latency", interval_s=0.2, show=False).start()
    try:
        measure_latency(tiny_llama, phases=("ttft", "tpot"), prompt_len=8, gen_len=3, energy=False,
                        warmup=1, repeats=2, min_time=0.0, progress=live)
    finally:
        live.stop()
    assert live._phase == "TTFT+TPOT" and live._runs >= 2
