"""The prefill engine on a GPU: the captured prefill (compiled or not) equals transformers' eager prefill
within the check's tolerance and picks the same greedy token; a deep copy reuses the compiled code, is
labelled so, and compares with its original without an engine warning."""

import copy

import torch

from elana_magic.latency import measure_latency
from elana_magic.latency.api import measure_paired
from elana_magic.latency.session import GenerationSession

P = 512


def _captured_vs_eager(s: GenerationSession) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        first = s.prefill().clone()                      # the engine's prefill: the first token ids
        eager = s._eager_prefill().float()               # transformers' own, from a fresh cache
    return first, eager


def test_captured_prefill_equals_eager(llama_1b):
    with GenerationSession(llama_1b, batch=1, prompt_len=P, gen_len=4) as s:
        assert s.engines == {"prefill": "cuda-graph", "decode": "cuda-graph"}, (s.prefill_note, s.note)
        first, eager = _captured_vs_eager(s)
        print("uncompiled prefill check:", s.prefill_check)
        assert torch.equal(first.view(-1), eager.argmax(-1).view(-1))
        assert s.prefill_check["max_abs_diff"] <= 2e-2 * max(1.0, eager.abs().max().item())


def test_compiled_prefill_within_tolerance_and_same_token(llama_1b):
    with GenerationSession(llama_1b, batch=1, prompt_len=P, gen_len=4, compile=True) as s:
        assert s.engines == {"prefill": "cuda-graph+compile", "decode": "cuda-graph+compile"}, (s.prefill_note, s.note)
        first, eager = _captured_vs_eager(s)
        print("compiled prefill check:", s.prefill_check, "tolerance", s.compile_tol)
        assert s.prefill_check["rel_err"] <= s.compile_tol
        picked = eager.gather(-1, first.view(-1, 1)).squeeze(-1)
        # the same token, or one whose eager score ties the best within bf16 rounding (random weights)
        assert torch.equal(first.view(-1), eager.argmax(-1).view(-1)) or \
            bool(((eager.max(-1).values - picked) <= 2e-2 * eager.abs().max()).all())


def test_report_names_each_phase_engine_and_eager_prefill_stays_eager(llama_1b):
    kw = dict(phases=["ttft"], prompt_len=P, gen_len=2, energy=False, progress=False, warmup=1, repeats=3,
              min_time=0)
    auto = measure_latency(llama_1b, **kw)
    eager = measure_latency(llama_1b, prefill="eager", **kw)
    assert auto.to_dict()["engines"]["prefill"].startswith("cuda-graph"), auto.notes
    assert eager.to_dict()["engines"]["prefill"] == "eager"


def test_deep_copy_is_reused_and_pairs_without_an_engine_warning(llama_1b):
    kw = dict(prompt_len=P, gen_len=17, energy=False, progress=False, warmup=1, repeats=3, min_time=0)
    base = measure_latency(llama_1b, phases=["tpot"], **kw)
    twin = copy.deepcopy(llama_1b)
    try:
        rep = measure_latency(twin, phases=["tpot"], **kw)
        d = rep.to_dict()
        compiled = rep.extra.get("compile") or {}
        print("copy:", d["engines"], compiled)
        assert d["engines"]["decode"] == base.to_dict()["engines"]["decode"] == "cuda-graph+compile"
        assert compiled.get("variant") == "reused", compiled
        comp = measure_paired([llama_1b, twin], labels=["original", "copy"], rounds=3, phases=["ttft", "tpot"],
                              **kw)
        print("paired warnings:", comp.warnings)
        assert not [w for w in comp.warnings if "engine" in w], comp.warnings
    finally:
        del twin
        torch.cuda.empty_cache()


def test_a_capture_that_fails_midway_leaves_the_random_generator_usable():
    """A capture that raised after a random op (as an out-of-memory prefill capture did in the grid's OOM
    cell) left every later random op on the GPU failing; graph_capture restores the generator."""
    from elana_magic.latency.devices import graph_capture

    graph = torch.cuda.CUDAGraph()
    try:
        with graph_capture(graph, torch.device("cuda")):
            torch.rand(8, device="cuda")
            raise torch.OutOfMemoryError("pretend")
    except torch.OutOfMemoryError:
        pass
    assert torch.randn(4, device="cuda").isfinite().all()
    torch.nn.init.normal_(torch.empty(16, device="cuda"))
