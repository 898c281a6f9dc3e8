"""Jetson rails through jetson-stats' jtop, tested with a fake ``jtop`` module in sys.modules.

The fake behaves as jtop 4.x does where elana-magic looks: ``jtop(interval)`` is a thread, ``start()``
connects to the service (or raises JtopException as the real one does when ``jtop.service`` is not
active), the thread publishes ``power = {'rail': {name: {'power': mW, 'volt': mV, 'curr': mA, ...}},
'tot': {...}}`` every interval and calls the attached observers, ``ok(spin=True)`` raises the error its
thread stored, and ``close()`` stops the thread.
"""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

from elana_magic.energy import EnergyMeter, jetson


class JtopException(Exception):
    pass


class FakeService:
    """What jtop.service would publish: rails (mW) the test changes, and how it misbehaves."""

    def __init__(self, rails: dict[str, float]) -> None:
        self.rails = dict(rails)
        self.running = True         # False: start() raises as the real client does without the service
        self.hang_on_start = False  # start() blocks (a stuck socket)
        self.release = threading.Event()  # ends a hung start() (at the test's end)
        self.clients: list = []


def make_module(service: FakeService) -> types.ModuleType:
    class jtop(threading.Thread):  # noqa: N801 - the real class's name
        def __init__(self, interval=1.0):
            super().__init__(name="fake-jtop", daemon=True)
            self._interval = float(interval)
            self._observers = set()
            self._running = False
            self._error = None
            self.power = {}
            self.closed = False
            self.fail_now: Exception | None = None  # the thread stores it and stops, as jtop's run() does
            self.freeze = False                     # the thread stays alive but publishes nothing
            service.clients.append(self)

        @property
        def interval(self):
            return self._interval

        def _publish(self):
            rails = {name: {"online": True, "type": "INA3221", "status": "ok", "volt": 5000,
                            "curr": int(mw / 5), "power": int(mw), "avg": int(mw)}
                     for name, mw in service.rails.items()}
            self.power = {"rail": rails, "tot": {"power": sum(r["power"] for r in rails.values()), "name": "ALL"}}
            for obs in list(self._observers):
                obs(self)

        def start(self):
            if service.hang_on_start:
                service.release.wait(30)
            if not service.running:
                raise JtopException("The jtop.service is not active. Please run:\nsudo systemctl restart jtop.service")
            self._publish()
            self._running = True
            super().start()

        def run(self):
            while self._running:
                time.sleep(self._interval)
                if self.fail_now is not None:
                    self._error = self.fail_now
                    return
                if not self.freeze and self._running:
                    self._publish()

        def ok(self, spin=False):
            if self._error is not None:
                raise self._error
            return self._running

        def attach(self, observer):
            self._observers.add(observer)

        def detach(self, observer):
            self._observers.discard(observer)

        def close(self):
            self.closed = True
            self._running = False

    module = types.ModuleType("jtop")
    module.jtop = jtop
    module.JtopException = JtopException
    return module


@pytest.fixture
def jtop_service(monkeypatch):
    """A fake jtop module over a fake service with Orin Nano's three rails (10 W, 4 W, 2 W)."""
    service = FakeService({"VDD_IN": 10000, "VDD_CPU_GPU_CV": 4000, "VDD_SOC": 2000})
    monkeypatch.setitem(sys.modules, "jtop", make_module(service))
    monkeypatch.setattr(jetson, "JTOP_INTERVAL_S", 0.05)
    monkeypatch.setattr(jetson, "JTOP_OPEN_TIMEOUT_S", 0.5)
    monkeypatch.delenv(jetson.SOURCE_ENV, raising=False)
    yield service
    service.release.set()
    for client in service.clients:
        client.close()
    _no_jtop_threads_left(service)


def _no_jtop_threads_left(service, deadline_s=2.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if all(not c.is_alive() for c in service.clients) and not any(
                t.name.startswith("elana-jtop") for t in threading.enumerate()):
            return True
        time.sleep(0.02)
    return False


def test_rails_read_through_jtop_when_its_service_answers(jtop_service, sysfs, tmp_path):
    sysfs.make_orin_nano(tmp_path)  # sysfs says 10 W / 4 W / 2 W too; jtop is preferred
    rails, why = jetson.discover(str(tmp_path))
    assert why is None
    assert [r.name for r in rails] == ["VDD_IN - module input (total)", "VDD_CPU_GPU_CV - CPU+GPU+CV (shared rail)",
                                       "VDD_SOC - SoC"]
    assert [r.source for r in rails] == ["jtop"] * 3
    assert all("(jtop)" in r.method for r in rails)
    assert [r.counted_in_total for r in rails] == [True, False, False]
    jtop_service.rails["VDD_IN"] = 12500
    time.sleep(0.2)
    assert rails[0].read().power_w == pytest.approx(12.5)
    assert rails[2].read().power_w == pytest.approx(2.0)
    client = jtop_service.clients[0]
    for r in rails:
        r.close()
    assert client.closed and _no_jtop_threads_left(jtop_service)


def test_jtop_rails_without_sysfs_on_a_jetson(jtop_service, tmp_path, monkeypatch):
    """Thor: jtop knows rails that sysfs does not show; a Jetson (nv_tegra_release) tries jtop anyway."""
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R38 (release)")
    monkeypatch.setattr(jetson, "TEGRA_RELEASE", str(release))
    jtop_service.rails = {"VDD_GPU": 30000, "VDD_CPU_SOC_MSS": 9000}
    rails, why = jetson.discover(str(tmp_path / "sys"))
    assert why is None and [r.source for r in rails] == ["jtop", "jtop"]
    assert all(r.counted_in_total for r in rails)  # no module input rail: the sum of rails
    assert "sum of rails" in rails[0].note
    rails[0].close()


def test_window_report_says_jtop_was_read(jtop_service, sysfs, tmp_path, no_nvml, monkeypatch):
    sysfs.make_orin_nano(tmp_path)
    monkeypatch.setattr(jetson, "SYSFS_ROOT", str(tmp_path))
    with EnergyMeter(measure_idle=False, cpu=False) as meter:
        with meter.window() as win:
            time.sleep(0.3)
        client = jtop_service.clients[0]
    rep = win.report
    assert rep.energy_j == pytest.approx(10.0 * rep.duration_s, rel=0.1)
    assert "jtop" in rep.method
    assert [d["source"] for d in rep.devices] == ["jtop"] * 3
    assert "jtop" in rep.to_text()
    assert client.closed and _no_jtop_threads_left(jtop_service)


def test_service_not_running_falls_back_to_sysfs_with_a_note(jtop_service, sysfs, tmp_path):
    sysfs.make_orin_nano(tmp_path)
    jtop_service.running = False
    t0 = time.perf_counter()
    rails, why = jetson.discover(str(tmp_path))
    assert time.perf_counter() - t0 < 1.0
    assert why is None and [r.source for r in rails] == ["sysfs"] * 3
    assert all("(sysfs)" in r.method for r in rails)
    assert "jtop.service is not active" in rails[0].note and "read from sysfs" in rails[0].note
    assert "140 ms" in rails[0].note  # the INA3221 note is kept beside it
    assert rails[0].read().power_w == pytest.approx(10.0)


def test_service_that_never_answers_does_not_hang(jtop_service, sysfs, tmp_path):
    sysfs.make_orin_nano(tmp_path)
    jtop_service.hang_on_start = True
    t0 = time.perf_counter()
    rails, why = jetson.discover(str(tmp_path))
    assert time.perf_counter() - t0 < jetson.JTOP_OPEN_TIMEOUT_S + 0.5
    assert [r.source for r in rails] == ["sysfs"] * 3
    assert "did not answer within" in rails[0].note


def test_sysfs_source_skips_jtop(jtop_service, sysfs, tmp_path, monkeypatch):
    sysfs.make_orin_nano(tmp_path)
    monkeypatch.setenv(jetson.SOURCE_ENV, "sysfs")
    rails, _ = jetson.discover(str(tmp_path))
    assert [r.source for r in rails] == ["sysfs"] * 3 and not jtop_service.clients
    assert "jtop" not in rails[0].note


def test_not_installed_reads_sysfs_without_a_word(sysfs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # import jtop -> ImportError
    sysfs.make_orin_nano(tmp_path)
    rails, why = jetson.discover(str(tmp_path))
    assert why is None and [r.source for r in rails] == ["sysfs"] * 3
    assert rails[0].note == "INA3221 update interval 140 ms"


@pytest.mark.parametrize("how", ["thread error", "frozen"])
def test_jtop_failing_mid_run_switches_to_sysfs(jtop_service, sysfs, tmp_path, no_nvml, monkeypatch, how):
    hw = sysfs.make_orin_nano(tmp_path)
    monkeypatch.setattr(jetson, "SYSFS_ROOT", str(tmp_path))
    with EnergyMeter(measure_idle=False, cpu=False) as meter:
        client = jtop_service.clients[0]
        with meter.window() as win:
            time.sleep(0.15)
            if how == "thread error":
                client.fail_now = JtopException("Lost connection with jtop server")
            else:
                client.freeze = True  # alive, silent: stale after 4 intervals + 0.5 s
            sysfs.write_atomic(f"{hw}/curr1_input", 4000)  # 20 W from here on, as sysfs reads it
            time.sleep(0.9)
    rep = win.report
    assert not rep.errors, rep.errors
    total = rep.devices[0]
    assert total["source"] == "sysfs" and "jtop, then sysfs" in total["method"]
    why = "Lost connection" if how == "thread error" else "no update from jtop.service"
    assert why in total["note"] and "read from sysfs since" in total["note"]
    assert why in rep.to_text()
    assert 10.0 * rep.duration_s < rep.energy_j < 20.0 * rep.duration_s
    assert client.closed and _no_jtop_threads_left(jtop_service)


def test_jtop_failing_without_sysfs_twin_ends_the_series(jtop_service, tmp_path, no_nvml, monkeypatch):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R38")
    monkeypatch.setattr(jetson, "TEGRA_RELEASE", str(release))
    monkeypatch.setattr(jetson, "SYSFS_ROOT", str(tmp_path / "sys"))
    with EnergyMeter(measure_idle=False, cpu=False) as meter:
        client = jtop_service.clients[0]
        with meter.window() as win:
            time.sleep(0.15)
            client.fail_now = JtopException("Lost connection with jtop server")
            time.sleep(0.3)
    rep = win.report
    assert rep.errors and "Lost connection" in rep.errors[0]
    assert rep.energy_j is not None and rep.energy_j > 0  # up to its last reading
    assert _no_jtop_threads_left(jtop_service)
