"""What a timing rests on: the host's load over the run, the cores and threads, recorded in the envelope,
and the conditions two runs differ in (core.conditions, core.threads)."""

from __future__ import annotations

import json

import pytest
import torch

from elana_magic.core.conditions import LOAD_TOLERANCE_CORES, differences, finish_conditions, other_busy_cores
from elana_magic.core.environment import capture_environment, finish_environment
from elana_magic.core.threads import choose_threads, cpu_threads, current_choice


def _snap(t, busy, own):
    return {"loadavg": [0.5, 0.5, 0.5], "busy_cpu_s": busy, "own_cpu_s": own, "time_s": t}


def test_other_processes_load_is_busy_time_minus_ours():
    assert other_busy_cores(_snap(0, 100, 1), _snap(2, 104, 2)) == pytest.approx(1.5)   # 4 busy s, 1 ours, 2 s
    assert other_busy_cores(_snap(0, 100, 1), _snap(1, 100.5, 2)) == 0.0   # coarse ticks: never below zero
    assert other_busy_cores(_snap(0, None, 1), _snap(1, None, 2)) is None


def test_environment_records_the_conditions_over_the_run_as_json(no_nvml):
    env = capture_environment("cpu")
    cond = env["conditions"]
    assert cond["cores"] >= 1 and cond["torch_threads"] == torch.get_num_threads() and "end" not in cond
    finish_environment(env, "cpu")
    assert cond["window_s"] >= 0 and cond["end"]["time_s"] >= cond["start"]["time_s"]
    if cond["start"]["busy_cpu_s"] is not None:   # Linux: /proc/stat
        assert cond["other_busy_cores"] >= 0 and 0 <= cond["cores_free"] <= cond["cores"]
    if cond["start"]["run_s"] is not None:   # schedstat
        assert cond["cpu_wait_ratio"] is None or cond["cpu_wait_ratio"] >= 0
    assert json.loads(json.dumps(env)) == env
    assert finish_conditions({}) == {}   # a report saved without conditions


def _env(load=None, threads=None, gpu=None):
    cond = {"other_busy_cores": load, "torch_threads": threads}
    return {"conditions": cond, **({"gpu": gpu} if gpu else {})}


def test_differences_name_load_threads_clocks_and_temperature():
    assert differences(_env(0.1, 1), _env(0.1 + LOAD_TOLERANCE_CORES * 0.9, 1)) == []
    assert differences(_env(0.1, 1), _env(1.9, 1)) == ["host load changed between the runs (0.1 -> 1.9 busy cores)"]
    assert differences(_env(0.1, 1), _env(0.1, 2)) == ["torch used 1 -> 2 CPU threads"]
    assert differences(_env(0.1, 1), _env(0.1, 2), cpu=False) == []   # on a GPU torch's CPU threads hardly matter
    hot = {"start": {"sm_clock_mhz": 1980, "temperature_c": 40}, "end": {"sm_clock_mhz": 1410, "temperature_c": 83}}
    cool = {"start": {"sm_clock_mhz": 1980, "temperature_c": 38}, "end": {"sm_clock_mhz": 1980, "temperature_c": 45}}
    said = differences(_env(gpu=cool), _env(gpu=hot), cpu=False)
    assert said == ["the GPU's SM clock at the end was 1980 -> 1410 MHz",
                    "the GPU's temperature at the end was 45 -> 83 C"]
    assert differences({}, {}) == []   # reports saved before conditions were recorded
    # every core busy in both runs, but far more work queued in the second: our threads waited longer
    queued = {"conditions": {"other_busy_cores": 1.7, "cpu_wait_ratio": 1.8}}, \
        {"conditions": {"other_busy_cores": 1.9, "cpu_wait_ratio": 12.7}}
    assert differences(*queued) == ["host load changed between the runs (waits for a core 1.80 -> 12.70 s per CPU second)"]
    steady = {"conditions": {"cpu_wait_ratio": 0.02}}, {"conditions": {"cpu_wait_ratio": 0.2}}
    assert differences(*steady) == []   # 1.02 vs 1.2: within the 25% tolerance
    by_loadavg = {"conditions": {"start": {"loadavg": [0.2, 0, 0]}}}, {"conditions": {"end": {"loadavg": [2.1, 0, 0]}}}
    assert differences(*by_loadavg) == ["host load changed between the runs (0.2 -> 2.1 load average)"]


def test_threads_follow_the_free_cores_and_never_rise():
    assert choose_threads(2, 0.1, 2) == 2
    assert choose_threads(2, 0.9, 2) == 1   # a core shared with other work stalls every thread
    assert choose_threads(2, 1.9, 2) == 1   # at least one
    assert choose_threads(8, 3.2, 8) == 5
    assert choose_threads(8, 0.0, 3) == 3   # a count the user lowered stays low
    assert choose_threads(2, None, 2) == 2   # no counters: torch's count


def test_cpu_threads_sets_records_and_restores(no_nvml):
    before = torch.get_num_threads()
    with cpu_threads("cpu", threads=1) as choice:
        assert torch.get_num_threads() == 1 and choice["how"] == "given" and choice["inherited"] == before
        with cpu_threads("cpu") as inner:   # the outer choice holds: no second sample
            assert inner == choice and torch.get_num_threads() == 1
        env = capture_environment("cpu")
        assert env["conditions"]["threads"] == choice and env["conditions"]["torch_threads"] == 1
    assert torch.get_num_threads() == before and current_choice() is None
    with cpu_threads("cpu") as chosen:
        assert 1 <= chosen["threads"] <= before and chosen["how"] == "free cores"
    with cpu_threads("cuda:0") as none:   # a GPU measurement leaves torch's CPU threads alone
        assert none is None and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        with cpu_threads("cpu", threads=0):
            pass
    assert torch.get_num_threads() == before


def test_measurement_records_its_thread_choice(tiny_llama, no_nvml):
    from elana_magic.latency import measure_latency

    before = torch.get_num_threads()
    rep = measure_latency(tiny_llama, phases=["tpot"], prompt_len=8, gen_len=5, warmup=0, repeats=2, min_time=0,
                          progress=False, energy=False)
    cond = rep.envelope.environment["conditions"]
    assert cond["threads"]["how"] == "free cores" and cond["torch_threads"] == cond["threads"]["threads"]
    assert cond["other_busy_cores"] is None or cond["other_busy_cores"] >= 0
    assert torch.get_num_threads() == before
