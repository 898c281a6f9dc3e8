"""The live view on a GPU: it draws the NVML sampler's power series while the measurement runs, and leaves no thread."""

import threading

from elana_magic.core.live import LiveView
from elana_magic.latency import measure_latency


class RecordingLiveView(LiveView):
    """The live view, keeping the power series and the SVG of every redraw."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[list, str]] = []

    def redraw(self) -> None:
        super().redraw()
        if self._power is not None and self._plot is not None:
            self.seen.append((self._power(), self._plot.value))


def test_live_view_draws_the_nvml_power_series(llama_1b):
    view = RecordingLiveView("elana latency", interval_s=0.2, show=False).start()
    try:
        rep = measure_latency(llama_1b, phases=("tpot",), prompt_len=128, gen_len=32, energy=True, warmup=1,
                              repeats=3, min_time=0.5, progress=view)
    finally:
        view.stop()
        view.close_widgets()
    assert view.redraws >= 5  # the energy window lasts >= 3 s, a redraw every 0.2 s
    drawn = [(series, svg) for series, svg in view.seen if series]
    assert drawn, "no redraw had a power series"
    series, svg = drawn[-1]
    _, t, watts = series[0]
    assert len(t) == len(watts) > 10 and all(w > 0 for w in watts)
    assert "<svg" in svg
    assert rep.energy["j_per_token"] and rep.energy["j_per_token"] > 0
    assert not [th.name for th in threading.enumerate() if th.name.startswith("elana-")]
