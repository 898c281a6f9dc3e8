"""Compiled decode, honestly named: a fallback past torch.compile's recompile limit is seen and reported.

There is no CUDA graph on a CPU, so a test double stands in for the graph capture: the session's compiled
step still goes through torch.compile (dynamo, eager backend: no C++ compiler needed, fast), whose
recompile limit is set to one variant and used up by another model first.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from elana_magic.latency import measure_latency
from elana_magic.latency import session as S

FAST = dict(warmup=0, repeats=2, min_time=0.0, progress=False, energy=False)


class _OtherModel(torch.nn.Module):
    def forward(self, input_ids=None, **kwargs):
        return SimpleNamespace(logits=input_ids.float().unsqueeze(-1))


def _graph_double(self, compiled: bool = False) -> None:
    """Stands in for ``_setup_graph`` on a CPU: the compiled step's first call, then eager decode."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        self._forward(self.input_ids[:, :1], self._new_dynamic_cache(), None, compiled)
        if compiled:
            self.compile_s = time.perf_counter() - t0
    self._setup_eager()


@pytest.fixture
def one_variant(monkeypatch):
    """The compiled step may keep one variant; the CUDA graph is the double above."""
    step = torch.compile(S._model_logits, backend="eager", dynamic=False, recompile_limit=1)
    monkeypatch.setitem(S._COMPILED, "step", step)
    monkeypatch.setattr(S, "graphs_supported", lambda device: True)
    monkeypatch.setattr(S.GenerationSession, "_setup_graph", _graph_double)
    torch._dynamo.reset()
    yield step
    torch._dynamo.reset()


def test_compile_fallback_names_the_engine_that_ran(tiny_llama, one_variant):
    """Done when 4."""
    one_variant(_OtherModel(), {"input_ids": torch.ones(1, 1, dtype=torch.long)})  # the one variant, used up
    rep = measure_latency(tiny_llama, batch=1, prompt_len=8, gen_len=3, cuda_graph=True, compile="whole", **FAST)
    assert rep.engine == "cuda-graph"            # not "cuda-graph+compile": the step ran uncompiled
    assert rep.compile["variant"] == "fell back" and rep.compile["compile_s"] is None
    assert "recompile_limit" in rep.compile["reason"]
    assert any("compiled decode step not used" in n for n in rep.notes)
    assert "cuda-graph decode" in rep.to_text() and "variant fell back" in rep.to_text()
    # a second session of another shape: dynamo now runs the step uncompiled silently; still seen
    rep2 = measure_latency(tiny_llama, batch=2, prompt_len=8, gen_len=3, cuda_graph=True, compile="whole", **FAST)
    assert rep2.engine == "cuda-graph" and rep2.compile["variant"] == "fell back"


def test_compiled_variant_new_then_reused(tiny_llama, one_variant):
    rep = measure_latency(tiny_llama, batch=1, prompt_len=8, gen_len=3, cuda_graph=True, compile="whole", **FAST)
    assert rep.engine == "cuda-graph+compile" and rep.compile["variant"] == "new"
    assert rep.compile["compile_s"] is not None  # compile time, apart from the measured figures
    again = measure_latency(tiny_llama, batch=1, prompt_len=8, gen_len=3, cuda_graph=True, compile="whole", **FAST)
    assert again.engine == "cuda-graph+compile" and again.compile["variant"] == "reused"


def test_a_deep_copy_reuses_the_compiled_step_and_says_so(tiny_llama, one_variant):
    """Done when 3: a copy runs the compiled code without a compile event: "reused", never "fell back"."""
    import copy

    first = measure_latency(tiny_llama, batch=1, prompt_len=8, gen_len=3, cuda_graph=True, compile="whole", **FAST)
    assert first.engine == "cuda-graph+compile" and first.compile["variant"] in ("new", "reused")
    twin = copy.deepcopy(tiny_llama)
    rep = measure_latency(twin, batch=1, prompt_len=8, gen_len=3, cuda_graph=True, compile="whole", **FAST)
    assert rep.engine == "cuda-graph+compile" and rep.compile["variant"] == "reused"
    assert "reason" not in rep.compile and not any("decode step not used" in n for n in rep.notes)


def test_paired_model_and_its_deep_copy_carry_no_engine_warning(tiny_llama, one_variant):
    import copy

    from elana_magic.latency import measure_paired

    twin = copy.deepcopy(tiny_llama)
    comp = measure_paired([tiny_llama, twin], labels=["model", "copy"], rounds=2, phases=["tpot"], batch=1,
                          prompt_len=8, gen_len=3, cuda_graph=True, compile="whole", **FAST)
    a, b = comp.reports
    assert a.engine == b.engine == "cuda-graph+compile" and a.engines == b.engines
    assert b.compile["variant"] == "reused"
    assert not any("engine" in w for w in comp.warnings), comp.warnings
