"""Workload grids: every cell measured, out-of-memory cells marked, peak memory per phase, plots, DataFrame."""

from __future__ import annotations

import pytest
import torch

from elana_magic.latency import LatencyGridReport, LatencyReport, measure_grid, measure_latency
from elana_magic.latency.grid import OUT_OF_MEMORY
from elana_magic.latency.session import GenerationInputError

FAST = dict(warmup=0, repeats=2, min_time=0.0, progress=False)
FIGURES = ["ttft_ms", "tpot_ms", "ttlt_ms", "tpot_ci95_low_ms", "tpot_ci95_high_ms", "j_per_prompt", "j_per_token",
           "j_per_request", "tokens_per_s", "tokens_per_j", "mbu", "mfu", "peak_memory_bytes"]


def test_grid_through_the_shell_on_the_embedded_model(ip, default_model, fake_energy):
    """Done when 1: a 2 x 2 grid (batch x prompt length) returns 4 rows with every figure, plots, DataFrame."""
    ip.user_ns["model"] = default_model.model
    grid = ip.run_line_magic("elana_latency", "model --batch 1 2 --prompt-len 8 16 --gen-len 7 --warmup 0"
                                              " --repeats 2 --min-time 0 --peak-bw 50GB/s --peak-flops 1T -o -q")
    assert isinstance(grid, LatencyGridReport)
    assert [(r["batch"], r["prompt_len"]) for r in grid.cells] == [(1, 8), (2, 8), (1, 16), (2, 16)]
    for row in grid.cells:
        assert row["status"] == "ok"
        missing = [k for k in FIGURES if row[k] is None]
        assert not missing, f"cell {row['batch']}x{row['prompt_len']} lacks {missing}"
    assert len(grid.reports) == 4 and all(isinstance(r, LatencyReport) for r in grid.reports)
    df = grid.to_dataframe()
    assert len(df) == 4 and {"batch", "prompt_len", "tpot_ms", "j_per_token", "peak_memory_bytes"} <= set(df.columns)
    fig = grid.figure()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["TPOT vs context length", "energy per decode step vs context length",
                      "decode throughput vs batch", "tokens per joule vs batch"]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)  # a line per batch, then a line per length
    text = grid.to_text()
    assert "largest batch that fit: 2" in text and "J/token" in text
    assert "<table" in grid.to_html() and grid.to_json().startswith("{")


def test_single_values_still_give_a_latency_report(tiny_llama):
    rep = measure_latency(tiny_llama, batch=[2], prompt_len=8, gen_len=[3], energy=False, **FAST)
    assert isinstance(rep, LatencyReport) and rep.batch == 2


class _OutOfMemoryAtBatch:
    """A test double of the allocator's error: the forward raises torch.OutOfMemoryError from a batch on."""

    def __init__(self, model, batch: int):
        self.batch = batch
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] >= self.batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (test double)")


def test_out_of_memory_cell_is_marked_and_the_others_complete(tiny_llama):
    """Done when 2."""
    double = _OutOfMemoryAtBatch(tiny_llama, batch=4)
    try:
        grid = measure_grid(tiny_llama, batch=[1, 4, 2], prompt_len=[8, 12], gen_len=3, energy=False, **FAST)
    finally:
        double.handle.remove()
    status = {(r["batch"], r["prompt_len"]): r["status"] for r in grid.cells}
    assert status == {(1, 8): "ok", (4, 8): OUT_OF_MEMORY, (2, 8): "ok",
                      (1, 12): "ok", (4, 12): OUT_OF_MEMORY, (2, 12): "ok"}
    assert [r is None for r in grid.reports] == [False, True, False, False, True, False]
    assert grid.largest_batch_that_fit == [
        {"prompt_len": 8, "gen_len": 3, "largest_batch": 2, "smallest_out_of_memory": 4},
        {"prompt_len": 12, "gen_len": 3, "largest_batch": 2, "smallest_out_of_memory": 4}]
    assert "prompt 8 + gen 3: largest batch that fit: 2 (batch 4 ran out of memory)" in grid.to_text()
    assert grid.to_dataframe()["status"].tolist().count(OUT_OF_MEMORY) == 2
    grid.figure()  # plots skip the missing cells


def test_grid_input_is_checked_before_anything_runs(tiny_llama):
    with pytest.raises(GenerationInputError, match="exceeds the model's maximum"):
        measure_grid(tiny_llama, batch=[1, 2], prompt_len=[8, 1020], gen_len=8, energy=False, **FAST)
    with pytest.raises(GenerationInputError, match="positive"):
        measure_grid(tiny_llama, batch=[1, 0], prompt_len=8, gen_len=3, energy=False, **FAST)


PEAK_SCRIPT = """
import json, sys
from elana_magic.latency import measure_grid
from elana_magic.models import preset_config, random_model

batch, prompt_len = int(sys.argv[1]), int(sys.argv[2])
model = random_model(preset_config("tiny-llama", hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                                   num_key_value_heads=8, num_hidden_layers=2))
grid = measure_grid(model, phases=["ttft"], batch=[batch], prompt_len=[prompt_len], gen_len=1, energy=False,
                    warmup=0, repeats=2, min_time=0.0, progress=False)
entry = grid.reports[-1].memory["phases"][0]
print(json.dumps({"peak": grid.cells[0]["prefill_peak_bytes"], "entry": entry, "text": grid.reports[-1].to_text()}))
"""


def test_prefill_peak_grows_with_prompt_length_and_batch():
    """Done when 3: on CPU the measured prefill peak (resident growth) grows with the length and the batch.

    Each cell in a fresh interpreter: resident growth is only a peak's measure while the heap holds no
    memory freed by earlier work (a cell after a larger one reuses that memory, and its growth undercounts,
    which made one grid in one interpreter fail now and then)."""
    import json
    import subprocess
    import sys

    def cell(batch: int, prompt_len: int) -> dict:
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(batch), str(prompt_len)], capture_output=True,
                             text=True, timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    got = {(b, p): cell(b, p) for b, p in ((1, 64), (1, 512), (4, 64), (4, 512))}
    peak = {k: v["peak"] for k, v in got.items()}
    assert peak[(1, 64)] < peak[(1, 512)] < peak[(4, 512)], peak
    assert peak[(1, 64)] < peak[(4, 64)] < peak[(4, 512)], peak
    got = got[(4, 512)]
    entry = got["entry"]
    assert entry["phase"] == "prefill" and entry["analytic_cache_bytes"] == 2 * 2 * 4 * 512 * 512 * 4
    assert entry["activation_bytes"] == entry["measured_peak_bytes"] - entry["analytic_cache_bytes"]
    assert "memory prefill: analytic model" in got["text"]


def test_shared_runs_give_every_phase_and_say_so(tiny_llama):
    rep = measure_latency(tiny_llama, batch=2, prompt_len=8, gen_len=5, energy=False, warmup=1, repeats=3,
                          min_time=0.0, progress=False)
    assert rep.shared_runs is True
    assert rep.ttft_ms["n"] == rep.ttlt_ms["n"] >= 3 and rep.tpot_ms["n"] == 4 * rep.ttlt_ms["n"]
    assert set(rep.stopped) == {"ttft", "tpot", "ttlt"}
    assert any("one loop of requests" in n for n in rep.notes)
    assert [p["phase"] for p in rep.memory["phases"]] == ["prefill", "decode", "request"]
    old = measure_latency(tiny_llama, batch=2, prompt_len=8, gen_len=5, energy=False, warmup=1, repeats=3,
                          min_time=0.0, progress=False, shared_runs=False)
    assert old.shared_runs is False and old.tpot_ms["n"] >= 12


def test_energy_keeps_phases_apart(tiny_llama, fake_energy):
    rep = measure_latency(tiny_llama, prompt_len=8, gen_len=3, **FAST)
    assert rep.shared_runs is False and rep.energy["j_per_prompt"] is not None


def test_grid_bad_input_in_the_magic_is_one_line(ip, tiny_llama):
    from IPython.core.error import UsageError

    ip.user_ns["model"] = tiny_llama
    with pytest.raises(UsageError, match=r"^--batch takes whole numbers >= 1"):
        ip.run_line_magic("elana_latency", "model --batch 1 0 --no-energy -q")
    with pytest.raises(UsageError, match="--prompt sets one prompt length"):
        ip.run_line_magic("elana_latency", "model --batch 1 2 --prompt 'hi' --no-energy -q")


def test_a_grid_saves_and_loads_back_and_its_history_round_trips(ip, tiny_llama, tmp_path):
    """Issue 22: a grid report had no kind, so a saved grid (report.save, %elana_history --save) could not be
    read back; now it round-trips, out-of-memory cells included, and each note is shown once."""
    from elana_magic import load_report
    from elana_magic.core.history import HISTORY

    double = _OutOfMemoryAtBatch(tiny_llama, batch=4)
    try:
        grid = measure_grid(tiny_llama, batch=[1, 4], prompt_len=8, gen_len=3, energy=None, label="g", **FAST)
    finally:
        double.handle.remove()
    d = grid.to_dict()
    assert list(d)[:3] == ["kind", "format_version", "label"] and d["kind"] == "latency-grid"
    assert d["fingerprint"]["hash"] == grid.reports[0].fingerprint["hash"] and d["settings"]["batch"] == [1, 4]
    back = load_report(grid.save(str(tmp_path / "grid.json")))
    assert isinstance(back, LatencyGridReport) and back.to_text() == grid.to_text()
    assert back.cells == grid.cells and [r is None for r in back.reports] == [False, True]
    assert isinstance(back.reports[0], LatencyReport) and back.fingerprint == grid.fingerprint
    notes = [line for line in grid.to_text().splitlines() if line.startswith("note: ")]
    assert notes and len(notes) == len(set(notes))  # the grid's energy note and each cell's: once
    HISTORY.clear()
    HISTORY.add(grid)
    path = tmp_path / "runs.jsonl"
    ip.run_line_magic("elana_history", f"--save {path} -q")
    ip.run_line_magic("elana_history", "--clear -q")
    ip.run_line_magic("elana_history", f"--load {path} -q")
    assert len(HISTORY) == 1 and isinstance(HISTORY[0], LatencyGridReport) and HISTORY[0].cells == grid.cells
    ip.run_line_magic("elana_history", "")  # the listing reads a grid
