"""Envelope and paired A/B on a GPU: the GPU's state through NVML, a pruned copy against the original."""

import copy
import json
import os

import torch

from elana_magic.core.environment import capture_environment
from elana_magic.latency import measure_paired
from elana_magic.models import random_model


def test_environment_reads_the_gpu_state():
    env = capture_environment("cuda:0")
    start = env["gpu"]["start"]
    print(json.dumps(env, indent=1))
    assert env["device_name"] == torch.cuda.get_device_name(0) and env["driver"]
    assert start["power_limit_w"] > 0 and start["sm_clock_mhz"] > 0 and start["temperature_c"] > 0
    assert isinstance(start.get("other_processes", []), list)


def test_paired_pruned_copy_on_the_gpu():
    model = random_model("llama-3.2-1b", dtype=torch.bfloat16, device="cuda")
    pruned = copy.deepcopy(model)
    keep = 2 * len(pruned.model.layers) // 3
    pruned.model.layers = pruned.model.layers[:keep]
    pruned.config.num_hidden_layers = keep
    if getattr(pruned.config, "layer_types", None):
        pruned.config.layer_types = pruned.config.layer_types[:keep]
    comp = measure_paired([model, pruned], labels=["full", "pruned"], rounds=3, phases=["tpot", "ttft"],
                          prompt_len=256, gen_len=65, min_time=1.5, compile=False, progress=False)
    print(comp.to_text())
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "paired_gpu.json"), "w") as f:
            f.write(comp.to_json())
    assert comp.rounds == ["full", "pruned", "pruned", "full", "full", "pruned"]
    tpot = comp.ratio("TPOT")
    assert tpot.ci_high < 1 and 0.55 < tpot.ratio < 0.85
    for rep in comp.reports:
        assert rep.engine.startswith("cuda-graph") and 0 < rep.roofline["mbu"] < 1
        env = rep.envelope.environment
        assert env["gpu"]["start"]["sm_clock_mhz"] and env["gpu"]["end"]["sm_clock_mhz"]
    if comp.reports[0].energy.get("j_per_token") is not None:
        assert comp.ratio("J/token").ratio < 1
    assert comp.ratio("decode bytes/step").ratio < 1
    del model, pruned
    torch.cuda.empty_cache()
