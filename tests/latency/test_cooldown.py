"""Issue 23 item 3, steady rounds: --cooldown S | auto between paired rounds and grid cells, recorded in the
report, and the comparison's warning when paired rounds started at temperatures far apart.

The GPU is a fake NVML whose power and temperature settle after N polls; the clock is a fake one, so the
waits cost no time."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
from IPython.core.error import UsageError

from elana_magic.core import options
from elana_magic.core.compare import compare
from elana_magic.core.conditions import ROUND_TEMPERATURE_SPREAD_C, rounds_line
from elana_magic.energy import nvml as nvml_mod
from elana_magic.latency import LatencyReport, measure_latency, measure_paired
from elana_magic.latency import cooldown as cd
from elana_magic.latency.errors import GenerationInputError
from elana_magic.latency.settings import LatencySettings

FAST = dict(warmup=0, repeats=2, min_time=0.0, progress=False, energy=False, prompt_len=8, gen_len=3,
            phases=["tpot"])


class SettlingNvml:
    """A GPU at ``idle`` (W, C) read once at the start, then at ``hot`` for ``hot_polls`` reads after each
    round begins (``heat()``), then back at idle."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, idle=(60.0, 40), hot=(300.0, 55), hot_polls=3):
        self.idle, self.hot, self.hot_polls = idle, hot, hot_polls
        self.left, self.reads, self.inits, self.shutdowns = 0, 0, 0, 0

    def heat(self):
        self.left = self.hot_polls

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return "gpu0"

    def _state(self):
        return self.hot if self.left > 0 else self.idle

    def nvmlDeviceGetPowerUsage(self, h):
        return int(self._state()[0] * 1000)

    def nvmlDeviceGetTemperature(self, h, kind):
        self.reads += 1
        state = self._state()
        self.left = max(0, self.left - 1)   # the temperature read ends one poll
        return state[1]


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = SettlingNvml()
    monkeypatch.setattr(nvml_mod, "_module", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    clock = {"t": 0.0, "sleeps": []}

    def sleep(s):
        clock["sleeps"].append(s)
        clock["t"] += s

    monkeypatch.setattr(cd, "_sleep", sleep)
    monkeypatch.setattr(cd, "_now", lambda: clock["t"])
    return fake, clock


def test_auto_waits_until_power_and_temperature_settle(fake_gpu):
    fake, clock = fake_gpu
    with cd.Cooldown("auto", [0]) as c:
        assert (c.idle_power_w, c.idle_temperature_c) == (60.0, 40.0)
        c.before(label="A")            # the first round: no wait
        fake.heat()                    # the round heated the GPU: 3 hot polls follow
        c.before(label="B")
    assert fake.shutdowns == fake.inits == 1   # NVML released
    first, second = c.section()["rounds"]
    assert first["waited_s"] == 0 and not first["capped"]
    assert second["waited_s"] == pytest.approx(3 * cd.POLL_S) and not second["capped"]
    assert second["temperature_c"] == 40.0 and second["power_w"] == 60.0 and second["label"] == "B"
    assert clock["sleeps"] == [cd.POLL_S] * 3
    line = rounds_line(c.section())
    assert line.startswith("steady rounds: rounds started at 40/40 C, 60/60 W; cooldown auto waited 0.8 s")
    assert "at most 60 s" in line


def test_auto_stops_at_the_cap(fake_gpu):
    fake, clock = fake_gpu
    fake.hot_polls = 10_000            # never settles
    with cd.Cooldown("auto", [0]) as c:
        c.before(label="A")
        fake.heat()
        c.before(label="B")
    second = c.section()["rounds"][1]
    assert second["capped"] and second["waited_s"] == pytest.approx(cd.CAP_S)
    assert second["temperature_c"] == 55.0
    assert "the cap was reached before round 2" in rounds_line(c.section())


def test_band_is_ten_percent_or_15_w_and_3_c(fake_gpu):
    with cd.Cooldown("auto", [0]) as c:   # idle 60 W, 40 C: power band 15 W (10% is only 6 W)
        assert c.settled(75.0, 43.0) and not c.settled(76.0, 40.0) and not c.settled(60.0, 43.5)
        c.idle_power_w = 400.0            # 10% of 400 W = 40 W is the larger band
        assert c.settled(440.0, 40.0) and not c.settled(441.0, 40.0)
        assert c.settled(30.0, 20.0)      # below idle is idle enough


def test_fixed_seconds_sleep_before_each_round_after_the_first(fake_gpu):
    fake, clock = fake_gpu
    with cd.Cooldown(2.5, [0], unit="cell") as c:
        for i in range(3):
            c.before(cell=f"cell {i}")
    assert clock["sleeps"] == [2.5, 2.5]
    assert [r["waited_s"] for r in c.section()["rounds"]] == [0, 2.5, 2.5]
    assert "cooldown 2.5 s before each cell after the first" in rounds_line(c.section())


def test_on_a_cpu_auto_waits_nothing_and_says_so_once(no_nvml):
    with cd.Cooldown("auto", []) as c:
        for lab in "ABAB":
            c.before(label=lab)
    assert c.notes == [cd.NO_SENSOR_NOTE.format(unit="round")]
    assert all(r["waited_s"] == 0 and r["temperature_c"] is None for r in c.section()["rounds"])
    with cd.Cooldown(None, []) as quiet:
        quiet.before(label="A")
    assert quiet.section() is None and not quiet.notes   # nothing asked, nothing read: nothing recorded


def test_ctrl_c_during_a_wait_stops_cleanly(fake_gpu, monkeypatch):
    fake, _ = fake_gpu

    def interrupted(s):
        raise KeyboardInterrupt

    monkeypatch.setattr(cd, "_sleep", interrupted)
    threads = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        with cd.Cooldown("auto", [0]) as c:
            c.before(label="A")
            fake.heat()
            c.before(label="B")
    assert fake.shutdowns == fake.inits == 1 and nvml_mod._refs == 0
    assert threading.active_count() == threads


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "soon", True, "2"])
def test_settings_refuse_a_bad_cooldown(value):
    with pytest.raises(GenerationInputError, match="cooldown must be a number of seconds >= 0 or 'auto'"):
        LatencySettings(cooldown=value)


def test_settings_take_seconds_or_auto():
    assert LatencySettings(cooldown=3).cooldown == 3.0 and LatencySettings(cooldown=" AUTO ").cooldown == "auto"
    assert LatencySettings().cooldown is None
    s = LatencySettings(cooldown="auto")
    assert LatencySettings.from_dict(s.to_dict()) == s


def test_option_converts_and_refuses_in_one_line():
    opt = options.OPTIONS["cooldown"]
    assert opt.type("auto") == "auto" and opt.type("0.5") == 0.5
    with pytest.raises(options.OptionError, match=r"--cooldown takes a number of seconds >= 0 or auto.*'-2'"):
        opt.type("-2")


def test_bad_cooldown_refused_before_any_model_work(tiny_llama, monkeypatch):
    from elana_magic.latency import measure

    monkeypatch.setattr(measure, "GenerationSession", None)   # any model work would fail differently
    with pytest.raises(GenerationInputError, match="cooldown"):
        measure_latency(tiny_llama, cooldown="later", **FAST)


def test_paired_rounds_record_their_cooldown_on_a_cpu(tiny_llama, no_nvml):
    pruned = copy.deepcopy(tiny_llama)
    comp = measure_paired([tiny_llama, pruned], labels=["a", "b"], rounds=2, cooldown="auto", **FAST)
    for rep in comp.reports:
        section = rep.rounds_conditions
        assert [r["label"] for r in section["rounds"]] == comp.rounds == ["a", "b", "b", "a"]
        assert section["cooldown"] == "auto" and all(r["waited_s"] == 0 for r in section["rounds"])
        assert rep.notes.count(cd.NO_SENSOR_NOTE.format(unit="round")) == 1
        assert "steady rounds: cooldown auto waited 0.0/0.0/0.0 s" in rep.to_text()
    assert "steady rounds" in comp.to_text() and "steady rounds" in comp.to_html()
    back = LatencyReport.from_dict(comp.reports[0].to_dict())
    assert back.rounds_conditions == comp.reports[0].rounds_conditions


def test_grid_cells_wait_and_record(tiny_llama, no_nvml, monkeypatch):
    slept = []
    monkeypatch.setattr(cd, "_sleep", slept.append)
    grid = measure_latency(tiny_llama, batch=[1, 2], cooldown=0.05, **FAST)
    assert slept == [0.05]
    section = grid.data["rounds_conditions"]
    assert [r["cell"] for r in section["rounds"]] == ["batch 1, prompt 8, gen 3", "batch 2, prompt 8, gen 3"]
    assert "steady cells: cooldown 0.05 s before each cell after the first" in grid.to_text()


def test_magic_takes_cooldown(ip, tiny_llama):
    ip.user_ns.update(a=tiny_llama, b=copy.deepcopy(tiny_llama))
    comp = ip.run_line_magic("elana_latency", "a b --tpot --prompt-len 8 --gen-len 3 --warmup 0 --repeats 2 "
                                              "--min-time 0 --no-energy --rounds 2 --cooldown 0.05 -o -q")
    section = comp.reports[0].rounds_conditions
    assert section["cooldown"] == 0.05 and [r["waited_s"] > 0 for r in section["rounds"]] == [False, True, True, True]
    with pytest.raises(UsageError, match="--cooldown takes a number of seconds >= 0 or auto"):
        ip.run_line_magic("elana_latency", "a b --tpot --cooldown later")


def test_command_help_lists_cooldown(capsys):
    from elana_magic import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "--cooldown S|auto" in out and "at most 60 s" in " ".join(out.split())


# -- the comparison's warning ------------------------------------------------------------------------
def _paired(label, temps, samples):
    rounds = ["a", "b", "b", "a"]
    section = {"cooldown": None, "unit": "round", "idle_power_w": None, "idle_temperature_c": None,
               "rounds": [{"round": i + 1, "label": lab, "waited_s": 0.0, "capped": False, "temperature_c": t,
                           "power_w": 100.0} for i, (lab, t) in enumerate(zip(rounds, temps))]}
    return LatencyReport(label=label, model="M", device="cuda:0", device_name="H100", engine="cuda-graph", batch=1,
                         prompt_len=8, gen_len=9, phases=["tpot"], ttft_ms={"n": 0}, ttlt_ms={"n": 0},
                         tpot_ms={"n": len(samples), "median": float(np.median(samples))},
                         tpot_samples_ms=list(samples), rounds=rounds,
                         extra={"rounds_conditions": section, "round_sizes": {"tpot": [len(samples) // 2] * 2}})


def test_compare_warns_when_paired_rounds_started_at_temperatures_far_apart():
    samples = list(np.linspace(10, 11, 20))
    temps = [40, 47, 45, 41]
    comp = compare([_paired("a", temps, samples), _paired("b", temps, samples)])
    warning = [w for w in comp.warnings if "temperatures" in w]
    assert len(warning) == 1 and f"more than {ROUND_TEMPERATURE_SPREAD_C:g} C" in warning[0]
    assert "round 1 (a) at 40 C" in warning[0] and "round 2 (b) at 47 C" in warning[0]
    steady = compare([_paired("a", [40, 42, 44, 41], samples), _paired("b", [40, 42, 44, 41], samples)])
    assert not [w for w in steady.warnings if "temperatures" in w]
