"""%elana_profile on a real GPU: kernels on stream lanes, CUDA-graph kernels visible, nothing left behind."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from IPython.core.error import UsageError

from elana_magic.profile import profile_block, profile_phase, profiler_running


@pytest.fixture(autouse=True)
def profiler_stopped():
    yield
    assert not profiler_running(), "a torch profiler was left running"


@pytest.fixture(scope="module")
def gpu_llama():
    from elana_magic.models import random_model

    return random_model("tiny-llama", device="cuda")


def _kernels(path: str) -> list[dict]:
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as fh:
        return [e for e in json.load(fh)["traceEvents"] if e.get("cat") == "kernel"]


def test_graph_decode_kernels_on_stream_lanes(gpu_llama, tmp_path):
    rep = profile_phase(gpu_llama, "tpot", prompt_len=32, gen_len=6, steps=5, out=str(tmp_path))
    assert rep.engine == "cuda-graph"
    kernels = _kernels(rep.trace_path)
    assert kernels and all(e["ph"] == "X" and e["dur"] >= 0 for e in kernels)
    assert any("kernels and copies inside 5 graph replays" in n for n in rep.notes), rep.notes
    assert [s["kernels"] > 0 for s in rep.steps] == [True] * 5
    assert rep.step_time["gpu_mean_us"] > 0 and rep.busy_idle["busy_share"] > 0
    assert rep.to_dict()["kernel_table"][0]["share"] > 0


def test_eager_decode_has_launch_delays(gpu_llama, tmp_path):
    rep = profile_phase(gpu_llama, "tpot", prompt_len=32, gen_len=6, steps=3, out=str(tmp_path), cuda_graph=False)
    assert rep.engine == "eager"
    assert rep.launch_gaps["launch_delay"]["n"] > 0 and rep.launch_gaps["gaps"]["n"] > 0


def test_magic_on_gpu(ip, gpu_llama, tmp_path):
    ip.user_ns["m"] = gpu_llama
    rep = ip.run_line_magic("elana_profile", f"m --phase ttlt --prompt-len 16 --gen-len 4 --out {tmp_path} -o -q")
    assert rep.device.startswith("cuda") and rep.kernel_table
    assert {"elana:request[0]", "elana:prefill"} <= {s["name"] for s in rep.steps}
    html = rep.to_html()
    assert "GPU kernel timeline" in rep.timeline().axes[0].get_title(loc="left") and "<img" in html


def test_cell_magic_on_gpu(ip, tmp_path):
    cell = "import torch\na = torch.randn(512, 512, device='cuda')\nb = a @ a"
    rep = ip.run_cell_magic("elana_profile", f"--out {tmp_path} -o -q", cell)
    assert any(r["kind"] == "matmul" for r in rep.kernel_table)


def test_failure_under_profiler_frees_gpu_memory(ip, gpu_llama, tmp_path, monkeypatch):
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    calls = []
    forward = gpu_llama.forward

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("kernel exploded")
        return forward(*args, **kwargs)

    monkeypatch.setattr(gpu_llama, "forward", failing)
    ip.user_ns["m"] = gpu_llama
    with pytest.raises(UsageError, match="failed under the profiler"):
        ip.run_line_magic("elana_profile", f"m --phase ttft --prompt-len 16 --steps 3 --no-cuda-graph --out {tmp_path / 'o'}")
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= before
    assert not (tmp_path / "o").exists()


def test_block_api_on_gpu(tmp_path):
    x = torch.randn(256, 256, device="cuda")
    with profile_block(out=str(tmp_path), label="gpu-block") as prof:
        for i in range(3):
            with prof.step(f"decode_step[{i}]"):
                x = torch.relu(x @ x)
    rep = prof.report
    assert rep.step_time["steps"] == 3 and rep.step_time["gpu_mean_us"] > 0
