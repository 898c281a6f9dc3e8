"""The window logic against the fake NVML: energy, edges, idle, uncertainty, failures, cleanup."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import pytest


from elana_magic.energy import EnergyMeter, EnergyReport, ShortWindowWarning, measure_energy

CONTRACT = ("energy_j", "duration_s", "avg_power_w", "peak_power_w", "idle_power_w", "net_energy_j",
            "method", "devices", "uncertainty_j")


def busy(gpu_list, watts, seconds):
    for g in gpu_list:
        g.set_power(watts)
    time.sleep(seconds)
    for g in gpu_list:
        g.set_power(60.0)


def test_window_matches_true_energy_within_uncertainty(fake_nvml):
    gpu = fake_nvml.gpus[0]
    with EnergyMeter(devices=[0]) as meter:
        assert meter.available and meter.reason is None
        with meter.window(label="load") as win:
            gpu.set_power(300.0)
            time.sleep(0.8)
            gpu.set_power(150.0)
            time.sleep(0.4)
        rep = win.report
    truth = gpu.energy(rep.t_start, rep.t_end)
    assert isinstance(rep, EnergyReport)
    assert abs(rep.energy_j - truth) <= rep.uncertainty_j + 0.01 * truth
    assert rep.uncertainty_j < 0.05 * truth  # far below one counter tick x power (30 J)
    assert rep.idle_power_w == pytest.approx(60.0, rel=0.03)
    assert rep.net_energy_j == pytest.approx(rep.energy_j - rep.idle_power_w * rep.duration_s)
    assert rep.peak_power_w == pytest.approx(300.0, rel=0.03)  # the highest ~100 ms period average
    assert rep.avg_power_w == pytest.approx(rep.energy_j / rep.duration_s)
    assert "energy counter" in rep.method
    assert not rep.warnings
    data = rep.to_dict()
    for key in CONTRACT:
        assert key in data
    assert "timeline" not in data and "timeline" in rep.to_dict(timeline=True)
    # the timeline, scaled, splits the window: halves add up to the whole
    mid = rep.t_start + 0.5
    assert rep.energy_between(rep.t_start, mid) + rep.energy_between(mid, rep.t_end) == pytest.approx(rep.energy_j)
    assert rep.energy_between(rep.t_start, mid) == pytest.approx(gpu.energy(rep.t_start, mid), rel=0.05)


def test_two_devices_are_summed_and_listed(fake_nvml):
    with EnergyMeter() as meter:
        with meter.window() as win:
            busy(fake_nvml.gpus, 200.0, 0.5)
    rep = win.report
    assert [d["name"] for d in rep.devices] == ["GPU 0 (Fake H100)", "GPU 1 (Fake H100 #2)"]
    assert rep.energy_j == pytest.approx(sum(d["energy_j"] for d in rep.devices))
    truth = sum(g.energy(rep.t_start, rep.t_end) for g in fake_nvml.gpus)
    assert abs(rep.energy_j - truth) <= rep.uncertainty_j + 0.01 * truth
    assert rep.idle_power_w == pytest.approx(130.0, rel=0.03)
    assert rep.peak_power_w == pytest.approx(400.0, rel=0.03)


def test_short_burst_on_an_idle_gpu_is_split_out_of_its_counter_period(fake_nvml):
    gpu = fake_nvml.gpus[0]
    with EnergyMeter(devices=[0]) as meter:
        with pytest.warns(ShortWindowWarning, match="fewer than two energy-counter periods"):
            with meter.window() as win:
                busy([gpu], 700.0, 0.03)
    rep = win.report
    assert rep.warnings
    truth = gpu.energy(rep.t_start, rep.t_end)
    assert abs(rep.energy_j - truth) <= rep.uncertainty_j
    assert abs(rep.energy_j - truth) < 0.15 * truth  # a uniform split of the period would lose ~half


def test_window_inside_a_steady_load(fake_nvml):
    gpu = fake_nvml.gpus[0]
    gpu.set_power(400.0)
    time.sleep(0.25)
    # the fake counter runs on wall time: on a loaded CPU the scheduler can delay an edge's counter read
    # behind its timestamp by milliseconds (seen: 0.58 J = 1.5 ms at 400 W), so the slack is 10 ms of power
    slack = 400.0 * 0.010
    with EnergyMeter(devices=[0], measure_idle=False) as meter:
        for seconds in (0.05, 0.35):
            with meter.window() as win:
                time.sleep(seconds)
            rep = win.report
            assert rep.energy_j == pytest.approx(400.0 * rep.duration_s, rel=0.02, abs=slack)
            assert abs(rep.energy_j - 400.0 * rep.duration_s) <= rep.uncertainty_j + slack


def test_statement_form_repeats_until_long_enough(fake_nvml):
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.01)

    with EnergyMeter(devices=[0]) as meter:
        rep = measure_energy(work, meter=meter, min_time=0.4)
    assert rep.executions >= 20 and len(calls) > rep.executions  # 1, 10, ... trial runs first
    assert rep.window_duration_s >= 0.4
    assert rep.energy_j == pytest.approx(rep.window_energy_j / rep.executions)
    assert rep.duration_s == pytest.approx(rep.window_duration_s / rep.executions)
    assert rep.to_dict()["executions"] == rep.executions


def test_gpu_without_counter_integrates_power(fake_nvml):
    fake_nvml.gpus[0].counter = False
    fake_nvml.gpus[0].period_average = False  # pre-Volta GPUs report instantaneous power
    with EnergyMeter(devices=[0]) as meter:
        with meter.window() as win:
            busy(fake_nvml.gpus[:1], 200.0, 0.4)
    rep = win.report
    assert "no energy counter" in rep.method
    truth = fake_nvml.gpus[0].energy(rep.t_start, rep.t_end)
    assert abs(rep.energy_j - truth) <= rep.uncertainty_j


def test_sensor_failing_mid_window_keeps_what_was_measured(fake_nvml):
    gpu = fake_nvml.gpus[0]
    with EnergyMeter(devices=[0]) as meter:
        with meter.window() as win:
            gpu.set_power(200.0)
            time.sleep(0.4)
            gpu.fail = True
            time.sleep(0.2)
    rep = win.report
    assert rep.errors and "GPU is lost" in rep.errors[0]
    assert rep.devices[0]["failed"]
    assert 0.3 * 200 < rep.energy_j < 0.5 * 200  # covers up to the failure
    assert "error: " in rep.to_text()


def test_exception_and_interrupt_stop_the_sampler(fake_nvml):
    with EnergyMeter(devices=[0]) as meter:
        with pytest.raises(ZeroDivisionError):
            with meter.window() as win:
                time.sleep(0.05)
                1 / 0
        assert win.report is not None and win.report.duration_s > 0.04
        with pytest.raises(KeyboardInterrupt):
            with meter.window() as win2:
                raise KeyboardInterrupt
        assert win2.report.interrupted
    assert not [t for t in threading.enumerate() if t.name.startswith("elana")]


@pytest.mark.filterwarnings("ignore::elana_magic.energy.ShortWindowWarning")
def test_a_thousand_windows_leave_no_threads_and_no_growth(fake_nvml):
    for gpu in fake_nvml.gpus:
        gpu.tick = 0.002  # a fast counter: each window's close waits two ticks
    with EnergyMeter(devices=[0, 1], sample_hz=1000, measure_idle=False) as meter:
        def run(n):
            for _ in range(n):
                with meter.window() as win:
                    pass
                assert win.report.energy_j is not None
        run(50)
        gc.collect()
        threads = threading.active_count()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        run(1000)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    ours = [tracemalloc.Filter(True, "*elana_magic*")]
    grown = sum(s.size_diff for s in after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename"))
    assert threading.active_count() == threads
    assert grown < 50_000, f"{grown} bytes kept by elana_magic after 1000 windows"


def test_meter_close_is_idempotent_and_releases_nvml(fake_nvml):
    meter = EnergyMeter()
    meter.close()
    meter.close()
    assert fake_nvml.inits == fake_nvml.shutdowns == 1
    with pytest.raises(RuntimeError, match="closed"):
        meter.window()


def test_cuda_visible_devices_mapping(fake_nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with EnergyMeter() as meter:
        assert [s.name for s in meter.sensors] == ["GPU 0 (Fake H100 #2)"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-2222,GPU-1111aaaa")
    with EnergyMeter() as meter:
        assert [s.name for s in meter.sensors] == ["GPU 0 (Fake H100 #2)", "GPU 1 (Fake H100)"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,7,1")  # CUDA stops at the first invalid entry
    with EnergyMeter() as meter:
        assert len(meter.sensors) == 1
    with pytest.raises(ValueError, match="not visible"):
        EnergyMeter(devices=[3])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    meter = EnergyMeter()
    assert not meter.available and "no CUDA-visible" in meter.reason
    meter.close()


def test_no_sensor_still_times_the_code(monkeypatch):
    from elana_magic.energy import jetson, nvml, rapl

    class NoLibrary:
        def nvmlInit(self):
            raise OSError("NVML Shared Library Not Found")

    monkeypatch.setattr(nvml, "_module", NoLibrary())
    monkeypatch.setattr(jetson, "SYSFS_ROOT", "/nonexistent-sys")
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", "/nonexistent-powercap")
    with EnergyMeter() as meter:
        assert not meter.available
        with meter.window() as win:
            time.sleep(0.02)
    rep = win.report
    assert rep.energy_j is None and rep.duration_s >= 0.02
    assert "NVML Shared Library Not Found" in rep.reason and "powercap" in rep.reason
    text = rep.to_text()
    assert text.count("\n") == 1 and "No energy:" in text


def test_single_field_call_for_counter_and_power_when_cheaper(fake_nvml):
    fake_nvml.energy_field, fake_nvml.api_cost_s = True, 0.002
    gpu = fake_nvml.gpus[0]
    with EnergyMeter(devices=[0]) as meter:
        assert "one nvmlDeviceGetFieldValues" in meter.sensors[0].read_path
        assert meter.sensors[0]._direct is not None  # the C call with a reused buffer
        with meter.window() as win:
            busy([gpu], 250.0, 0.5)
    rep = win.report
    truth = gpu.energy(rep.t_start, rep.t_end)
    assert abs(rep.energy_j - truth) <= rep.uncertainty_j + 0.01 * truth


def test_direct_field_read_failing_mid_window(fake_nvml):
    fake_nvml.energy_field, fake_nvml.api_cost_s = True, 0.002
    gpu = fake_nvml.gpus[0]
    with EnergyMeter(devices=[0]) as meter:
        with meter.window() as win:
            busy([gpu], 250.0, 0.3)
            gpu.fail = True
            time.sleep(0.1)
    assert win.report.errors and "nvmlDeviceGetFieldValues failed" in win.report.errors[0]
    assert win.report.energy_j > 0.2 * 250


def test_ctrl_c_while_the_close_waits_for_the_counter(fake_nvml, monkeypatch):
    import elana_magic.energy.window as window

    def interrupted(sampler, t_end):
        raise KeyboardInterrupt

    monkeypatch.setattr(window, "wait_for_counters", interrupted)
    with EnergyMeter(devices=[0], measure_idle=False) as meter:
        with pytest.raises(KeyboardInterrupt):
            with meter.window() as win:
                time.sleep(0.05)
    assert win.report is not None and win.report.interrupted
    assert not [t for t in threading.enumerate() if t.name.startswith("elana")]


def test_mig_uuid_maps_to_its_parent_gpu_with_a_note(fake_nvml, monkeypatch):
    class Mig:
        uuid = "MIG-abcd1234-5678"

    parent = fake_nvml.gpus[1]
    fake_nvml.nvmlDeviceGetMaxMigDeviceCount = lambda h: 2 if h is parent else 0
    fake_nvml.nvmlDeviceGetMigDeviceHandleByIndex = lambda h, i: Mig() if i == 0 else (_ for _ in ()).throw(
        RuntimeError("empty slot"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-abcd1234")
    with EnergyMeter(measure_idle=False) as meter:
        assert [s.name for s in meter.sensors] == ["GPU 0 (Fake H100 #2)"]
        assert "whole GPU" in meter.sensors[0].note
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-ffff")
    meter = EnergyMeter()
    assert not meter.available and "no CUDA-visible" in meter.reason
    meter.close()
