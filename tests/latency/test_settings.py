"""LatencySettings: one validated object; each option refused once, before any model work; JSON round trip."""

from __future__ import annotations

import json
import math

import pytest
import torch

from elana_magic.core import defaults
from elana_magic.latency.errors import GenerationInputError
from elana_magic.latency.settings import LatencySettings, settings_from

BAD = [
    ("phases", ["ttft", "prefill"], "unknown phase"),
    ("batch", 0, "batch must be a positive integer"),
    ("batch", [1, -2], "batch must be a positive integer"),
    ("batch", True, "batch must be a positive integer"),
    ("prompt_len", 1.5, "prompt length must be a positive integer"),
    ("gen_len", [], "gen length needs at least one value"),
    ("warmup", -1, "warmup must be an integer >= 0"),
    ("repeats", 0, "repeats must be a positive integer"),
    ("min_time", math.inf, "min time must be a finite number"),
    ("min_time", -1, "min time must be a finite number"),
    ("max_time", -1, "max time must be a finite number of seconds >= 0"),
    ("energy_window_s", math.nan, "energy window must be a finite number"),
    ("energy", "yes", "energy must be True or False"),
    ("cuda_graph", 1, "cuda_graph must be True or False"),
    ("compile", "max-autotune", "compile must be True, False"),
    ("prefill", "graph!", "prefill must be one of auto, eager"),
    ("ngpus", 0, "ngpus must be a positive integer"),
    ("rounds", 0, "rounds must be an integer from 1 to 1000"),
    ("rounds", 1001, "rounds must be an integer from 1 to 1000"),
    ("peak_bw", -3.0, "peak_bw must be a finite number > 0"),
    ("label", 3, "label must be a string"),
]


@pytest.mark.parametrize("name,value,message", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_each_option_is_refused_with_one_line(name, value, message):
    with pytest.raises(GenerationInputError, match=message) as info:
        LatencySettings(**{name: value})
    assert "\n" not in str(info.value)


def test_options_checked_together():
    with pytest.raises(GenerationInputError, match="TPOT needs at least 2"):
        LatencySettings(gen_len=[1, 8])
    with pytest.raises(GenerationInputError, match="grid uses random prompts"):
        LatencySettings(prompt="hi", batch=[1, 2])
    with pytest.raises(GenerationInputError, match="does not split over 2 replicas"):
        LatencySettings(ngpus=2, batch=3)
    assert LatencySettings(phases=["TTFT"], gen_len=1).phases == ("ttft",)


def test_defaults_come_from_core_defaults():
    s = LatencySettings()
    assert (s.batch, s.prompt_len, s.gen_len) == (defaults.BATCH, defaults.PROMPT_LEN, defaults.GEN_LEN)
    assert (s.warmup, s.repeats, s.min_time) == (defaults.WARMUP, defaults.REPEATS, defaults.MIN_TIME_S)
    assert s.energy_window_s == defaults.ENERGY_WINDOW_S and s.prefill == defaults.PREFILL
    assert s.rounds == defaults.PAIRED_ROUNDS and s.ngpus == defaults.NGPUS


@pytest.mark.parametrize("settings", [
    LatencySettings(),
    LatencySettings(batch=[1, 8], prompt_len=(16, 32), gen_len=4, phases=["tpot"], compile="whole", energy=False,
                    prefill="eager", label="x", peak_bw=3.35e12, max_time=5, cuda_graph=True),
])
def test_json_round_trip_gives_an_equal_object(settings):
    back = LatencySettings.from_dict(json.loads(json.dumps(settings.to_dict())))
    assert back == settings and hash(back) == hash(settings)


def test_grid_cells_and_kwargs():
    s = settings_from({"batch": [1, 2], "prompt_len": [8], "gen_len": 4, "ngpus": None, "energy": None})
    assert s.is_grid and s.prompt_len == 8 and s.ngpus == 1
    assert [(c.batch, c.prompt_len, c.gen_len) for c in s.cells()] == [(1, 8, 4), (2, 8, 4)]
    with pytest.raises(TypeError, match="unexpected latency option 'repeat'"):
        settings_from({"repeat": 3})
    with pytest.raises(GenerationInputError, match="unknown latency setting"):
        LatencySettings.from_dict({"bogus": 1})


class _MustNotRun(torch.nn.Module):
    """A model whose forward fails the test: a bad option must be refused before any model work."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, *args, **kwargs):  # pragma: no cover - reaching it is the failure
        pytest.fail("the model ran although an option was bad")


@pytest.mark.parametrize("name,value,message", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_measure_latency_refuses_before_model_work(name, value, message):
    from elana_magic.latency import measure_latency

    with pytest.raises(GenerationInputError, match=message):
        measure_latency(_MustNotRun(), progress=False, **{name: value})


def test_the_envelope_settings_are_the_settings_and_round_trip(tiny_llama):
    from elana_magic.latency import measure_latency

    settings = LatencySettings(phases=["ttft"], prompt_len=8, gen_len=1, warmup=0, repeats=2, min_time=0,
                               energy=False, label="rt", prefill="eager")
    rep = measure_latency(tiny_llama, settings=settings, progress=False)
    saved = json.loads(rep.to_json())["settings"]
    assert LatencySettings.from_dict(saved) == settings


def test_paired_and_grid_refuse_before_model_work():
    from elana_magic.latency import measure_grid, measure_paired

    with pytest.raises(GenerationInputError, match="rounds must be an integer from 1 to 1000"):
        measure_paired([_MustNotRun(), _MustNotRun()], rounds=0, progress=False)
    with pytest.raises(GenerationInputError, match="batch must be a positive integer"):
        measure_grid(_MustNotRun(), batch=[1, 0], progress=False)
