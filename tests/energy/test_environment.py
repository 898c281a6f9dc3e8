"""The environment in every report's envelope, with the GPU's state read through the fake NVML."""

from __future__ import annotations

import os

from elana_magic.core.environment import capture_environment, finish_environment, gpu_state


class _Proc:
    def __init__(self, pid, mem):
        self.pid, self.usedGpuMemory = pid, mem


def _add_state_queries(fake, clocks):
    fake.NVML_CLOCK_SM, fake.NVML_TEMPERATURE_GPU = 1, 0
    fake.nvmlSystemGetDriverVersion = lambda: b"575.57.08"
    fake.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000
    fake.nvmlDeviceGetClockInfo = lambda h, kind: clocks.pop(0) if clocks else 1980
    fake.nvmlDeviceGetTemperature = lambda h, kind: 41
    fake.nvmlDeviceGetComputeRunningProcesses = lambda h: [_Proc(os.getpid(), 1), _Proc(4242, 2 << 30)]


def test_gpu_state_from_nvml(fake_nvml):
    _add_state_queries(fake_nvml, [1980])
    state = gpu_state(1)
    assert state == {"driver": "575.57.08", "power_limit_w": 700.0, "sm_clock_mhz": 1980, "temperature_c": 41,
                     "other_processes": [{"pid": 4242, "used_memory_bytes": 2 << 30}]}


def test_environment_start_and_end(fake_nvml):
    _add_state_queries(fake_nvml, [1980, 1410])
    env = capture_environment("cuda:0")
    assert env["driver"] == "575.57.08" and env["gpu"]["start"]["sm_clock_mhz"] == 1980
    finish_environment(env, "cuda:0")
    assert env["gpu"]["end"]["sm_clock_mhz"] == 1410 and env["gpu"]["end"]["temperature_c"] == 41
    assert env["elana_magic"] and env["transformers"] and env["host"]


def test_missing_queries_leave_fields_out(fake_nvml):
    state = gpu_state(0)  # the bare fake answers none of the state queries
    assert state["power_limit_w"] is None and state["sm_clock_mhz"] is None and "other_processes" not in state


def test_no_nvml_no_gpu_state(no_nvml):
    assert gpu_state(0) is None
    env = capture_environment("cpu")
    assert "gpu" not in env and env["device"] == "cpu"
