"""Two GPUs: a device_map model measured on both (energy shares sum to the total, peak memory per GPU),
``ngpus=2`` replicas through torchrun + NCCL, and CUDA_VISIBLE_DEVICES naming the second GPU only.

Skipped with fewer than two visible GPUs. The figures go to benchmarks/multigpu.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from elana_magic.latency import measure_latency
from elana_magic.models import random_model, spread_over_gpus

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                reason="needs two GPUs")

SHAPE = dict(prompt_len=128, gen_len=32, progress=False)


@pytest.fixture(scope="module")
def split_1b():
    """Llama-3.2-1B shape (random bf16) dispatched by accelerate over GPUs 0 and 1."""
    model = spread_over_gpus(random_model("llama-3.2-1b", dtype=torch.bfloat16, device="cuda:0"), [0, 1])
    yield model
    del model
    torch.cuda.empty_cache()


def test_device_map_model_is_timed_and_metered_on_both_gpus(split_1b):
    assert set(split_1b.hf_device_map.values()) == {0, 1}
    rep = measure_latency(split_1b, energy=True, **SHAPE)
    print(rep.to_text())
    assert rep.devices == ["cuda:0", "cuda:1"]
    assert rep.engine == "eager" and any("spans 2 GPUs" in n for n in rep.notes)
    assert 0 < rep.ttft_ms["median"] < rep.ttlt_ms["median"] and rep.tpot_ms["median"] > 0
    energy = rep.energy
    rows = {row["device"]: row for row in energy["per_device"]}
    assert set(rows) == {"cuda:0", "cuda:1"}
    for key in ("j_per_prompt", "j_per_token", "j_per_request"):
        assert all(rows[d][key] > 0 for d in rows)
        assert rows["cuda:0"][key] + rows["cuda:1"][key] == pytest.approx(energy[key], rel=1e-9)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    # each GPU holds about half the weights (2.5 GB in bf16) plus its activations
    for device in ("cuda:0", "cuda:1"):
        assert rep.peak_memory[device]["max"] > 0.5e9


def test_ngpus_2_runs_two_nccl_replicas():
    model = random_model("llama-3.2-1b", dtype=torch.bfloat16)
    rep = measure_latency(model, ngpus=2, batch=2, energy=True, **SHAPE)
    print(rep.to_text())
    d = rep.to_dict()
    assert d["backend"] == "nccl" and d["devices"] == ["cuda:0", "cuda:1"] and d["micro_batch"] == 1
    ranks = d["ranks"]
    for key in ("j_per_prompt", "j_per_token", "j_per_request"):
        assert all(r["energy"][key] > 0 for r in ranks)
        assert d["energy"][key] == pytest.approx(sum(r["energy"][key] for r in ranks))
    assert d["tpot_ms"]["median"] == max(r["tpot_ms"]["median"] for r in ranks)
    assert all(r["peak_memory"]["max"] > 2e9 for r in ranks)  # a full bf16 replica on each GPU


def test_cuda_visible_devices_naming_the_second_gpu_measures_only_it():
    second = str(torch.cuda.get_device_properties(1).uuid).removeprefix("GPU-")
    script = (
        "import json, torch\n"
        "from elana_magic.energy import nvml\n"
        "from elana_magic.latency import measure_latency\n"
        "from elana_magic.models import random_model\n"
        "m = random_model('smollm2-135m', dtype=torch.bfloat16, device='cuda')\n"
        "rep = measure_latency(m, phases=['tpot'], prompt_len=64, gen_len=16, energy=True, progress=False)\n"
        "lib = nvml.acquire()\n"
        "(_, handle, _), = nvml.visible_handles(lib, [0])\n"
        "uuid = nvml._text(lib.nvmlDeviceGetUUID(handle))\n"
        "nvml.release()\n"
        "print(json.dumps({'count': torch.cuda.device_count(), 'torch_uuid': str(torch.cuda.get_device_properties(0).uuid),"
        " 'nvml_uuid': uuid, 'devices': rep.devices, 'per_device': rep.energy['per_device']}))\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": f"GPU-{second}"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(got)
    assert got["count"] == 1 and got["torch_uuid"].removeprefix("GPU-") == second
    assert got["nvml_uuid"].removeprefix("GPU-") == second  # NVML read the second physical GPU
    assert got["devices"] == ["cuda:0"] and len(got["per_device"]) == 1 and got["per_device"][0]["j_per_token"] > 0
