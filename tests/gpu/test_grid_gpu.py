"""Grids on a GPU: every cell with the engine that ran, the allocator's peak per phase, OOM cells marked."""

import torch

from elana_magic.latency import measure_grid, measure_latency
from elana_magic.latency.grid import OUT_OF_MEMORY
from elana_magic.size import largest_fit


def test_grid_memory_and_engines(llama_1b):
    before = torch.cuda.memory_allocated()
    grid = measure_latency(llama_1b, batch=[1, 4], prompt_len=[128, 512], gen_len=16, warmup=1, repeats=3,
                           min_time=0, progress=False)
    assert torch.cuda.memory_allocated() == before
    assert [r["status"] for r in grid.cells] == ["ok"] * 4
    assert all(r["engine"] in ("cuda-graph+compile", "cuda-graph") for r in grid.cells)
    for rep in grid.reports:
        assert rep.engine == ("cuda-graph+compile" if rep.compile["variant"] in ("new", "reused") else "cuda-graph")
        prefill = rep.memory["phases"][0]
        assert prefill["measured_kind"] == "allocated" and prefill["activation_bytes"] >= 0, prefill
        assert prefill["measured_peak_bytes"] >= prefill["analytic_bytes"]
    peak = {(r["batch"], r["prompt_len"]): r["prefill_peak_bytes"] for r in grid.cells}
    assert peak[(1, 128)] < peak[(1, 512)] < peak[(4, 512)] and peak[(1, 128)] < peak[(4, 128)]
    print(grid.to_text())
    again = measure_latency(llama_1b, batch=1, prompt_len=128, gen_len=16, warmup=1, repeats=3, min_time=0,
                            progress=False, energy=False)
    assert again.compile["variant"] == "reused" and again.engine == "cuda-graph+compile"
    fit = largest_fit(llama_1b, seq_len=512 + 16)
    assert "measured in this process" in fit.basis and 4 < fit.answer < 1 << 20
    # the model is resident: need grows by one sequence's cache + activations per batch, so the answer fills memory
    assert 0.9 * fit.memory_bytes < fit.needed_bytes_at_answer <= fit.memory_bytes, fit.to_dict()
    print(fit.to_text())


def test_out_of_memory_cell_in_a_grid(llama_1b):
    before = torch.cuda.memory_allocated()
    grid = measure_grid(llama_1b, phases=["ttft"], batch=[1, 4096], prompt_len=[8000], gen_len=[192],
                        energy=False, warmup=0, repeats=2, min_time=0, progress=False)
    assert [r["status"] for r in grid.cells] == ["ok", OUT_OF_MEMORY]
    assert grid.largest_batch_that_fit[0]["largest_batch"] == 1
    assert torch.cuda.memory_allocated() == before
