"""A model spread over two GPUs (device_map): its device set comes from hf_device_map, and every GPU in
it is synchronized at each timed edge, metered (share and total) and has its peak memory read.

No GPU here: the model runs on the CPU while torch.cuda is a fake of two devices that counts what is
asked of each, and NVML is the fake of two GPUs (tests/energy/conftest.py)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import torch

from elana_magic.latency import measure_latency
from elana_magic.latency.devices import model_devices
from elana_magic.models import random_model


class FakeEvent:
    def __init__(self, cuda: "FakeCuda", enable_timing: bool = True) -> None:
        self.cuda, self.t, self.stream = cuda, None, None

    def record(self, stream=None) -> None:
        self.t, self.stream = time.perf_counter(), stream
        self.cuda.records[stream] += 1

    def elapsed_time(self, other: "FakeEvent") -> float:
        assert self.stream == other.stream, "events of two devices compared"
        return (other.t - self.t) * 1e3


class FakeCuda:
    """What measure_latency, the session and the energy window ask of torch.cuda, for two devices."""

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.syncs: list[int] = []
        self.records: Counter = Counter()
        self.resets: Counter = Counter()

    def install(self, monkeypatch) -> None:
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "is_available", lambda: True)
        monkeypatch.setattr(cuda, "is_initialized", lambda: True)
        monkeypatch.setattr(cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(cuda, "current_device", lambda: 0)
        monkeypatch.setattr(cuda, "synchronize", self.synchronize)
        monkeypatch.setattr(cuda, "Event", lambda enable_timing=False: FakeEvent(self, enable_timing))
        monkeypatch.setattr(cuda, "current_stream", lambda device=None: f"stream{self._index(device)}")
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda device=None: self.resets.update([self._index(device)]))
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda device=None: 1000 * (self._index(device) + 1))
        monkeypatch.setattr(cuda, "empty_cache", lambda: None)

    def _index(self, device) -> int:
        index = device.index if isinstance(device, torch.device) else device
        assert isinstance(index, int) and 0 <= index < self.count, f"no CUDA device {device!r}"
        return index

    def synchronize(self, device=None) -> None:
        assert device is not None, "synchronize() without a device waits on the current one only"
        self.syncs.append(self._index(device))


TWO_GPU_MAP = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0, "model.layers.1": "cuda:1",
               "model.norm": 1, "lm_head": 1}


@pytest.fixture
def split_model():
    """tiny-llama (on the CPU) placed by accelerate-style hf_device_map over two GPUs."""
    model = random_model("tiny-llama")
    model.hf_device_map = dict(TWO_GPU_MAP)
    return model


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    fake.install(monkeypatch)
    return fake


def test_device_set_comes_from_hf_device_map():
    model = random_model("tiny-llama")
    assert model_devices(model) == [torch.device("cpu")]  # no map: the parameters' devices
    model.hf_device_map = {"model.embed_tokens": "cuda:1", "model.layers.0": 0, "model.layers.1": "cpu",
                           "lm_head": "disk"}
    assert model_devices(model) == [torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cpu")]


def test_device_map_model_is_synchronized_metered_and_peaked_on_every_gpu(fake_nvml, fake_cuda, split_model):
    rep = measure_latency(split_model, batch=1, prompt_len=8, gen_len=4, warmup=0, repeats=2, min_time=0.0,
                          energy=True, energy_window_s=0.3, progress=False)
    assert rep.devices == ["cuda:0", "cuda:1"]
    # every synchronize covers both GPUs, and there is at least one per timed iteration edge
    counts = Counter(fake_cuda.syncs)
    iterations = rep.ttft_ms["n"] + rep.tpot_ms["n"] // 3 + rep.ttlt_ms["n"]
    assert counts[0] == counts[1] >= 2 * iterations
    assert fake_cuda.records["stream0"] == fake_cuda.records["stream1"] > 0  # a mark is an event on each GPU
    # peak memory: reset before each phase, read per GPU
    assert fake_cuda.resets == Counter({0: 3, 1: 3})
    assert rep.peak_memory == {"cuda:0": {"ttft": 1000, "tpot": 1000, "ttlt": 1000, "max": 1000},
                               "cuda:1": {"ttft": 2000, "tpot": 2000, "ttlt": 2000, "max": 2000}}
    # energy: the meter opened on both GPUs; each GPU's share, and the shares sum to the total
    energy = rep.energy
    rows = {row["device"]: row for row in energy["per_device"]}
    assert set(rows) == {"cuda:0", "cuda:1"}
    for key in ("j_per_prompt", "j_per_token", "j_per_request"):
        assert rows["cuda:0"][key] + rows["cuda:1"][key] == pytest.approx(energy[key], rel=1e-9)
    assert rows["cuda:0"]["share"] + rows["cuda:1"]["share"] == pytest.approx(1.0)
    # the fake GPUs idle at 60 W and 70 W the whole time
    assert rows["cuda:1"]["share"] == pytest.approx(70 / 130, abs=0.03)
    text = rep.to_text()
    assert "2 GPUs" in text and "  cuda:0:" in text and "  cuda:1:" in text and "of the energy" in text
    assert rep.to_json()


def test_a_meter_that_misses_a_gpu_of_the_model_says_so(fake_nvml, fake_cuda, split_model):
    from elana_magic.energy import EnergyMeter

    with EnergyMeter(devices=[0]) as meter:
        rep = measure_latency(split_model, phases=["ttft"], prompt_len=8, gen_len=2, warmup=0, repeats=1,
                              min_time=0.0, energy_window_s=0.3, meter=meter, progress=False)
    assert [row["device"] for row in rep.energy["per_device"]] == ["cuda:0"]
    assert any("does not measure GPU(s) [1]" in n for n in rep.notes)


def test_profile_block_synchronizes_every_gpu(fake_cuda):
    from elana_magic.profile.capture import _synchronize

    _synchronize()
    assert sorted(fake_cuda.syncs) == [0, 1]


def test_balanced_device_map_puts_whole_layers_on_both_gpus():
    from transformers import AutoModelForCausalLM

    from elana_magic.models import balanced_device_map, preset_config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(preset_config("llama-3.1-8b"))
    device_map = balanced_device_map(model, [0, 1], free_bytes={0: 80 * 2**30, 1: 80 * 2**30})
    assert set(device_map.values()) == {0, 1}
    layers = [k for k in device_map if k.startswith("model.layers.")]
    assert len(layers) == 32  # decoder layers are never split
    model.hf_device_map = device_map
    assert model_devices(model) == [torch.device("cuda", 0), torch.device("cuda", 1)]


def test_a_mark_on_two_gpus_is_when_the_last_one_gets_there(fake_cuda):
    from elana_magic.latency.measure import _Clock

    clock = _Clock([torch.device("cuda", 0), torch.device("cuda", 1)])
    a = clock.start()
    b, c = clock.mark(), clock.mark()
    assert sorted(fake_cuda.syncs) == [0, 1]  # start() waits on both GPUs
    assert [ev.stream for ev in a] == ["stream0", "stream1"]  # one event per GPU, on its own stream
    for ev in a:
        ev.t = 10.0
    b[0].t, b[1].t = 10.2, 10.5  # GPU 1 finishes the first step 0.3 s after GPU 0
    c[0].t, c[1].t = 10.9, 10.6
    assert clock.seconds(a, b) == pytest.approx(0.5)
    assert clock.seconds(b, c) == pytest.approx(0.4)
    assert clock.host(c) - clock.host(a) == pytest.approx(0.9)


def test_the_latency_magic_measures_every_gpu_of_a_device_map_model(ip, fake_nvml, fake_cuda, split_model):
    ip.user_ns["split"] = split_model
    rep = ip.run_line_magic("elana_latency", "split --ttft --prompt-len 8 --gen-len 2 --warmup 0 --repeats 1 "
                                             "--min-time 0 --energy -o -q")
    assert rep.devices == ["cuda:0", "cuda:1"]
    assert [row["device"] for row in rep.energy["per_device"]] == ["cuda:0", "cuda:1"]
    assert set(rep.peak_memory) == {"cuda:0", "cuda:1"}
    assert Counter(fake_cuda.syncs)[0] == Counter(fake_cuda.syncs)[1] > 0
