"""The largest batch / length that fits: analytic, or analytic + the measured activation peak; on CPU, system memory."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from elana_magic.size import SizeError, largest_fit
from elana_magic.size.cache_shapes import cache_layout
from elana_magic.size.measure import load_config


def test_largest_batch_from_the_analytic_size():
    mem = {"bytes": 80 * 10**9, "where": "a test budget", "gpu": True}
    rep = largest_fit("random:llama-3.1-8b", seq_len=4096, memory=mem, cache_dtype="bfloat16")
    layout = cache_layout(load_config("random:llama-3.1-8b"))
    per_seq = sum(kv for kv, _ in layout.layer_bytes(1, 4096, 2, 4))  # bf16 cache: 4096 x 128 KiB
    assert per_seq == 4096 * 32 * 2 * 8 * 128 * 2
    expected = (mem["bytes"] - rep.model_bytes) // per_seq
    assert rep.answer == expected and rep.mode == "batch"
    assert "analytic model + cache alone" in rep.basis and not rep.model_resident
    assert f"largest batch at seq_len 4096: {expected}" in rep.to_text()
    longest = largest_fit("random:llama-3.1-8b", batch=8, memory=mem, cache_dtype="bfloat16")
    assert longest.answer == (mem["bytes"] - rep.model_bytes) // (8 * per_seq // 4096)


def test_measured_activation_peak_joins_the_answer(tiny_llama):
    from elana_magic.latency import measure_latency

    before = largest_fit(tiny_llama, batch=2, memory={"bytes": 10**9, "where": "test", "gpu": False})
    measure_latency(tiny_llama, phases=["ttft"], batch=2, prompt_len=64, gen_len=1, energy=False, warmup=0,
                    repeats=2, min_time=0.0, progress=False)
    after = largest_fit(tiny_llama, batch=2, memory={"bytes": 10**9, "where": "test", "gpu": False})
    assert after.measured_activation is not None and "measured in this process" in after.basis
    assert after.model_resident  # a CPU model's weights are in system memory already
    assert after.answer <= before.answer


def test_magic_on_cpu_answers_for_system_memory(ip, tiny_llama):
    ip.user_ns["model"] = tiny_llama
    rep = ip.run_line_magic("elana_size", "model --max-batch --seq-len 512 -o -q")
    assert rep.answer > 0 and "no GPU: system memory available" in rep.to_text()
    rep = ip.run_line_magic("elana_size", "model --max-seq-len --batch 4 -o -q")
    assert rep.mode == "seq_len" and rep.answer > 0
    with pytest.raises(UsageError, match="--max-batch needs one length"):
        ip.run_line_magic("elana_size", "model --max-batch")
    with pytest.raises(UsageError, match="pass one"):
        ip.run_line_magic("elana_size", "model --max-batch --max-seq-len --seq-len 8")


def test_bad_fit_input():
    with pytest.raises(SizeError, match="give a length"):
        largest_fit("random:tiny-llama")
    with pytest.raises(SizeError, match="positive"):
        largest_fit("random:tiny-llama", seq_len=0)


def test_a_cache_that_does_not_grow_never_answers_the_search_cap(monkeypatch):
    from elana_magic.size import cache_shapes

    monkeypatch.setattr(cache_shapes.CacheLayout, "layer_bytes", lambda self, *a: [(0, 0)])
    mem = {"bytes": 80 * 10**9, "where": "a test budget", "gpu": True}
    with pytest.raises(SizeError, match="no memory per sequence"):
        largest_fit("random:llama-3.1-8b", seq_len=4096, memory=mem)


def test_fit_honours_gib_and_the_models_context_length(ip, tiny_llama):
    """Issue 22: --max-batch ignored --gib and the model's context length (tiny-llama: 1024 positions)."""
    mem = {"bytes": 80 * 10**9, "where": "a test budget", "gpu": True}
    si = largest_fit("random:llama-3.1-8b", seq_len=4096, memory=mem)
    gib = largest_fit("random:llama-3.1-8b", seq_len=4096, memory=mem, binary=True)
    assert "80.000 GB" in si.to_text() and "74.506 GiB" in gib.to_text() and "GB " not in gib.to_text()
    with pytest.raises(SizeError, match="exceeds the model's maximum of 1024 positions"):
        largest_fit("random:tiny-llama", seq_len=4096, memory=mem)
    longest = largest_fit("random:tiny-llama", batch=1, memory=mem)
    assert longest.answer == 1024 and "at most 1024 positions" in longest.to_text()
    ip.user_ns["model"] = tiny_llama
    rep = ip.run_line_magic("elana_size", "model --max-batch --seq-len 512 --gib -o -q")
    assert "GiB" in rep.to_text() or "MiB" in rep.to_text()
    with pytest.raises(UsageError, match="exceeds the model's maximum of 1024 positions"):
        ip.run_line_magic("elana_size", "model --max-batch --seq-len 2048 -q")
