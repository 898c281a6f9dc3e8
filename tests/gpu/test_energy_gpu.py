"""The energy sensor on a real NVIDIA GPU: counter, timeline, window edges, the magic, cleanup.

Run on the GPU machine: ``pytest -m gpu tests/gpu/test_energy_gpu.py``.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from IPython.core.error import UsageError

torch = pytest.importorskip("torch")

from elana_magic.energy import EnergyMeter, EnergyReport, measure_energy, nvml  # noqa: E402

CONTRACT = ("energy_j", "duration_s", "avg_power_w", "peak_power_w", "idle_power_w", "net_energy_j",
            "method", "devices")


def matmul_load(seconds: float, n: int = 8192) -> None:
    """bf16 matmuls for about ``seconds`` (launched in chunks, synchronized at the end)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(4):
            torch.mm(a, b)
        torch.cuda.synchronize()
    del a, b


@pytest.fixture(scope="module")
def meter():
    m = EnergyMeter()
    yield m
    m.close()


def test_meter_reads_the_counter_and_idle(meter):
    assert meter.available, meter.reason
    gpu = meter.sensors[0]
    assert gpu.kind == "gpu" and gpu.has_counter
    idle = meter.idle_power_w()
    assert 20 < idle < 400
    print(f"\n{gpu.name}: idle {idle:.1f} W; read path: {gpu.read_path}")


def test_window_under_load(meter):
    matmul_load(0.5)  # warm up clocks
    with meter.window(label="1 s of matmuls") as win:
        matmul_load(1.0)
    rep = win.report
    assert isinstance(rep, EnergyReport)
    data = rep.to_dict()
    for key in CONTRACT:
        assert data[key] is not None, key
    assert rep.avg_power_w > rep.idle_power_w + 50
    assert rep.peak_power_w >= 0.8 * rep.avg_power_w
    assert rep.net_energy_j < rep.energy_j
    assert rep.uncertainty_j < 0.03 * rep.energy_j
    assert "energy counter" in rep.method and not rep.warnings
    dev = rep.devices[0]
    assert 0.02 < dev["counter_tick_s"] < 0.3
    samples = rep.to_dict()["samples"]
    assert samples >= 20 * rep.duration_s * 0.8, f"{samples} sensor reads in {rep.duration_s:.2f} s"
    mid = rep.t_start + rep.duration_s / 2
    assert rep.energy_between(rep.t_start, mid) + rep.energy_between(mid, rep.t_end) == pytest.approx(rep.energy_j)
    print(f"\n{rep.to_text()}\nsamples: {samples}, tick {dev['counter_tick_s'] * 1e3:.0f} ms")


def _tick(handle, pynvml):
    """Poll the counter until it changes: (time of the change, mJ)."""
    first = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    while True:
        t = time.perf_counter()
        value = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if value != first:
            return (t + time.perf_counter()) / 2, value


class BackgroundLoad:
    """bf16 matmuls launched from another thread on its own stream, never more than ~0.1 s queued,
    so the GPU stays busy across the window's edges (and while the window waits for the sensor)."""

    def __init__(self, n: int = 8192) -> None:
        self.a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="bench-load", daemon=True)

    def run(self) -> None:
        stream = torch.cuda.Stream()
        pending = []
        with torch.cuda.stream(stream):
            while not self.stop.is_set():
                for _ in range(10):
                    torch.mm(self.a, self.a)
                event = torch.cuda.Event()
                event.record(stream)
                pending.append(event)
                if len(pending) > 5:
                    pending.pop(0).synchronize()
        stream.synchronize()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        del self.a
        torch.cuda.synchronize()


def test_steady_load_window_agrees_with_independent_counter(meter):
    """~3 s of steady matmuls: window vs the counter read around it (1%), timeline vs counter (5%)."""
    pynvml = nvml.load_pynvml()
    handle = meter.sensors[0]._handle  # the NVML handle of CUDA device 0
    with BackgroundLoad():
        time.sleep(1.0)
        ta, ea = _tick(handle, pynvml)  # counter read independently, load running on both sides
        with meter.window(label="steady 3 s") as win:
            time.sleep(3.0)
        tb, eb = _tick(handle, pynvml)
    rep = win.report
    reference_w = (eb - ea) / 1000.0 / (tb - ta)
    window_w = rep.energy_j / rep.duration_s
    tl = rep.timelines[0]
    from elana_magic.energy.sampler import integrate

    # the power readings' own integral (not the counter-derived steps)
    timeline_w = integrate(tl.readings_t, tl.readings_w, rep.t_start, rep.t_end) / rep.duration_s
    print(f"\nsteady: window {window_w:.1f} W, counter around it {reference_w:.1f} W, "
          f"timeline {timeline_w:.1f} W")
    assert window_w == pytest.approx(reference_w, rel=0.01)
    assert timeline_w == pytest.approx(window_w, rel=0.05)


def test_statement_form_repeats_short_work(meter):
    a = torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16)

    def work():
        for _ in range(5):
            torch.mm(a, a)

    rep = measure_energy(work, meter=meter, min_time=1.0)
    assert rep.executions > 10 and rep.window_duration_s >= 0.9
    assert rep.energy_j == pytest.approx(rep.window_energy_j / rep.executions)
    assert not rep.warnings


def test_cuda_visible_devices_uuid_maps_to_the_same_gpu(monkeypatch):
    import pynvml

    pynvml.nvmlInit()
    try:
        uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(0))
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    finally:
        pynvml.nvmlShutdown()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", uuid[:12])
    with EnergyMeter(measure_idle=False) as m:
        assert len(m.sensors) >= 1 and m.sensors[0].kind == "gpu"
        got = nvml.load_pynvml().nvmlDeviceGetUUID(m.sensors[0]._handle)
        assert (got.decode() if isinstance(got, bytes) else got) == uuid


def test_magic_on_a_gpu_cell(monkeypatch):
    from IPython.testing.globalipapp import get_ipython
    from IPython.utils.capture import capture_output

    from elana_magic.magics import energy as energy_magics

    ip = get_ipython()
    ip.register_magics(energy_magics.EnergyMagics)
    formatter = ip.display_formatter
    saved = list(formatter.active_types)
    formatter.active_types = ["text/plain", "text/html"]
    try:
        ip.user_ns["torch"] = torch
        cell = ("x = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)\n"
                "for _ in range(300):\n    y = x @ x\n"
                "float(y[0, 0])")
        with capture_output() as cap:
            value = ip.run_cell_magic("elana_energy", "--label gpu-cell", cell)
        assert isinstance(value, float)
        html = cap.outputs[0].data["text/html"]
        assert "<img" in html and "GPU 0" in html and "idle" in html
        rep = ip.run_cell_magic("elana_energy", "-o -q --devices 0", cell)
        for key in CONTRACT:
            assert rep.to_dict()[key] is not None, key
        before = torch.cuda.memory_allocated()
        # the cell's error shows as a plain cell's, then one UsageError line (issue 8: "Run all" stops here)
        with pytest.raises(UsageError, match="the cell raised RuntimeError: x"):
            ip.run_cell_magic("elana_energy", "", "z = torch.empty(1, device='cuda')\nraise RuntimeError('x')")
        ip.user_ns.pop("z", None)
        assert torch.cuda.memory_allocated() <= before
        assert not [t for t in threading.enumerate() if t.name.startswith("elana")]
        with open(os.path.join(os.environ.get("OUT", "/tmp"), "energy_magic_gpu.html"), "w") as f:
            f.write(html)
    finally:
        energy_magics.close_meters()
        formatter.active_types = saved
        for name in ("x", "y", "torch"):
            ip.user_ns.pop(name, None)
        torch.cuda.empty_cache()
