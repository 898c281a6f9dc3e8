"""%%elana_energy / %elana_energy through a real IPython shell (fake NVML, fake powercap, no sensor)."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output


from elana_magic.energy import EnergyReport, rapl
from elana_magic.magics import energy as energy_magics

CONTRACT = ("energy_j", "duration_s", "avg_power_w", "peak_power_w", "idle_power_w", "net_energy_j",
            "method", "devices")


@pytest.fixture
def eip(session_ip):
    """The shell with EnergyMagics registered, HTML captured, meters closed and namespace reset after."""
    session_ip.register_magics(energy_magics.EnergyMagics)
    formatter = session_ip.display_formatter
    saved = list(formatter.active_types)
    formatter.active_types = ["text/plain", "text/html"]
    yield session_ip
    energy_magics.close_meters()
    formatter.active_types = saved
    session_ip.run_line_magic("reset", "-f")


def test_cell_runs_as_a_normal_cell_and_returns_the_report(eip, fake_nvml):
    gpu = fake_nvml.gpus[0]
    eip.user_ns["gpu"] = gpu
    eip.user_ns["time"] = time
    cell = "gpu.set_power(300.0)\ntime.sleep(0.5)\ngpu.set_power(60.0)\ny = 41\ny + 1"
    with capture_output() as cap:
        value = eip.run_cell_magic("elana_energy", "--devices 0 --label load", cell)
    assert value == 42 and eip.user_ns["y"] == 41
    html = cap.outputs[0].data["text/html"]
    assert "<img" in html and "Energy - load" in html and "GPU 0 (Fake H100)" in html
    rep = eip.run_cell_magic("elana_energy", "--devices 0 -o -q --no-plot", cell)
    assert isinstance(rep, EnergyReport)
    data = rep.to_dict()
    for key in CONTRACT:
        assert data[key] is not None, key
    truth = gpu.energy(rep.t_start, rep.t_end)
    assert abs(rep.energy_j - truth) <= rep.uncertainty_j + 0.01 * truth
    assert "<img" not in rep.to_html()


def test_var_quiet_and_text(eip, fake_nvml):
    with capture_output() as cap:
        out = eip.run_cell_magic("elana_energy", "-q -v rep", "z = 1")
    assert out is None and not cap.outputs and not cap.stdout
    rep = eip.user_ns["rep"]
    assert eip.user_ns["z"] == 1 and isinstance(rep, EnergyReport)
    text = rep.to_text()
    assert "energy" in text and "idle" in text and "±" in text and "GPU 1" in text


def test_statement_form_repeats_and_reports_per_execution(eip, fake_nvml):
    eip.user_ns["calls"] = []
    rep = eip.run_line_magic("elana_energy", '-o -q --min-time 0.3 calls.append("a b")')
    assert rep.executions > 100 and len(eip.user_ns["calls"]) > rep.executions  # trial runs first
    assert eip.user_ns["calls"][0] == "a b"  # quoting kept
    assert rep.energy_j == pytest.approx(rep.window_energy_j / rep.executions)


def test_cell_exception_reaches_the_user_and_stops_the_sampler(eip, fake_nvml):
    with capture_output() as cap, pytest.raises(UsageError, match="raised ZeroDivisionError.*shown above"):
        eip.run_cell_magic("elana_energy", "", "before = 1\n1/0")
    assert "ZeroDivisionError" in cap.stdout  # shown as a plain cell shows it
    assert eip.user_ns["before"] == 1
    result = eip.run_cell("%%elana_energy\nraise ValueError('boom')")
    assert isinstance(result.error_in_exec, UsageError) and "ValueError: boom" in str(result.error_in_exec)
    assert not [t for t in threading.enumerate() if t.name.startswith("elana")]


def test_ctrl_c_mid_cell_stops_everything(eip, fake_nvml):
    eip.user_ns["time"] = time
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
    timer.start()
    with pytest.raises(UsageError, match="interrupted"):
        eip.run_cell_magic("elana_energy", "", "time.sleep(5)")
    timer.join()
    assert not [t for t in threading.enumerate() if t.name.startswith("elana")]


def test_bad_input_is_a_one_line_usage_error(eip, fake_nvml):
    with pytest.raises(UsageError, match="give a statement"):
        eip.run_line_magic("elana_energy", "")
    with pytest.raises(UsageError, match="--devices takes CUDA device indices"):
        eip.run_cell_magic("elana_energy", "--devices a,b", "1")
    with pytest.raises(UsageError, match="not visible"):
        eip.run_cell_magic("elana_energy", "--devices 5", "1")
    for bad in ("0", "nan", "inf", "1e400", "-1"):
        with pytest.raises(UsageError, match=f"^--min-time takes a number of seconds > 0, e.g. --min-time 2; got '{bad}'$"):
            eip.run_line_magic("elana_energy", f"--min-time {bad} 1")
    with pytest.raises(UsageError, match="unrecognized"):
        eip.run_cell_magic("elana_energy", "--bogus", "1")


def test_no_sensor_runs_the_cell_and_says_why(eip, no_nvml):
    with capture_output() as cap:
        value = eip.run_cell_magic("elana_energy", "", "w = 5\nw * 2")
    assert value == 10 and eip.user_ns["w"] == 5
    text = cap.outputs[0].data["text/plain"]
    assert text.startswith("Energy\nNo energy: no NVIDIA GPU") and text.count("\n") == 1
    assert "powercap" in text and "The code ran in" in text


def test_cpu_only_machine_reports_rapl(sysfs, eip, no_nvml, tmp_path, monkeypatch):
    pkg = sysfs.make_rapl(tmp_path)
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", str(tmp_path))
    eip.user_ns["bump"] = lambda: open(f"{pkg}/energy_uj", "w").write("6000000")  # noqa: SIM115 - +5 J
    rep = eip.run_cell_magic("elana_energy", "-o -q", "bump()")
    assert rep.energy_j == pytest.approx(5.0, abs=0.01) and rep.cpu_energy_j == pytest.approx(5.0, abs=0.01)
    assert "RAPL" in rep.method


def test_label_quotes_are_removed(eip, fake_nvml):
    rep = eip.run_cell_magic("elana_energy", '--label "two words" -o -q', "1")
    assert rep.label == "two words"
    rep = eip.run_line_magic("elana_energy", "--label 'a b' -o -q --min-time 0.05 1 + 1")
    assert rep.label == "a b"


@pytest.mark.parametrize("var", ["1bad", "for", "a-b", "__builtins__"])
def test_a_bad_variable_name_is_refused_before_the_cell_runs(eip, fake_nvml, var):
    eip.user_ns["ran"] = False
    with pytest.raises(UsageError, match=f"^-v takes a Python variable name, e.g. -v rep; got '{var}'"):
        eip.run_cell_magic("elana_energy", f"-v {var}", "ran = True")
    with pytest.raises(UsageError, match="^-v takes a Python variable name"):
        eip.run_line_magic("elana_energy", f"-v {var} ran = True")
    assert eip.user_ns["ran"] is False
