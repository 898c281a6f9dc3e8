"""%elana_latency on a GPU: graph engine == generate() greedy, energy per phase from NVML, memory and state restored."""

import pytest
import torch
from IPython.core.error import UsageError

from elana_magic.latency import measure_latency
import time

from elana_magic.latency.session import GenerationOutOfMemory, GenerationSession

P, G = 512, 128


def _generate(model, ids, **kwargs):
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=G, min_new_tokens=G,
                         do_sample=False, output_logits=True, return_dict_in_generate=True, **kwargs)
    return out.sequences[:, ids.shape[1]:], out.logits


def assert_tokens_follow_generate(model, ids, ours, engine: str) -> None:
    """Our greedy tokens equal generate(static)'s, except where generate's own logits show a bf16 tie."""
    model.generation_config.disable_compile = True
    try:
        tokens, logits = _generate(model, ids, cache_implementation="static")
    finally:
        model.generation_config.disable_compile = False
    same = (ours == tokens)[0]
    first = int(same.long().argmin()) if not bool(same.all()) else G
    print(f"{engine}: tokens equal to generate(static): {first}/{G} before any divergence")
    if first < G:
        step = logits[first][0].float()
        gap = (step.max() - step[ours[0, first]]).item()
        tol = 2e-2 * max(1.0, step.abs().max().item())
        print(f"divergence at token {first}: generate's logit gap to our token {gap:.4g} (bf16 tie tolerance {tol:.3g})")
        assert gap <= tol


def test_graph_tokens_equal_generate(llama_1b):
    """Greedy tokens of the graph engine == generate()'s, for all G tokens, up to a bf16 near-tie.

    Random-weight models have logits whose top two can differ by less than bf16 rounding, and
    generate() may run other kernels than our engine (it is given a 2-D attention mask): where the token
    streams part, generate()'s own logits must show that our token was a tie at that step."""
    model = llama_1b
    with GenerationSession(model, batch=1, prompt_len=P, gen_len=G) as s:
        assert s.engine == "cuda-graph", s.note
        ours = s.request()
        ids = s.input_ids.clone()
        assert s.max_abs_diff == 0.0  # the captured step == an eager step from the same state
    assert_tokens_follow_generate(model, ids, ours, "graph engine")


def test_compiled_engine_checked_reused_and_tokens(llama_1b):
    """The compiled decode step is captured, checked against eager (relative error, tie-aware top-1), reused
    by a second session of the same shape, and its greedy tokens follow generate()'s up to a bf16 near-tie."""
    model = llama_1b
    with GenerationSession(model, batch=1, prompt_len=P, gen_len=G, compile=True) as s:
        assert s.engine == "cuda-graph+compile", s.note
        assert s.rel_err <= s.compile_tol
        print(f"compiled step: first call {s.compile_s:.1f} s, rel err {s.rel_err:.3g}, max abs {s.max_abs_diff:.3g}")
        ours = s.request()
        ids = s.input_ids.clone()
    t = time.perf_counter()
    with GenerationSession(model, batch=1, prompt_len=P, gen_len=G, compile=True) as s:
        assert s.engine == "cuda-graph+compile", s.note
        reuse = s.compile_s
    print(f"second session: open {time.perf_counter() - t:.2f} s, compiled step's first call {reuse:.3f} s")
    assert reuse < 2.0
    assert_tokens_follow_generate(model, ids, ours, "compiled engine")


def test_eager_attention_is_captured_too(llama_1b):
    """An eager-attention copy decodes in the CUDA graph, compiled or not, with its own causal mask in the step.

    Under transformers 5.17 its mask made a host-to-device copy that capture refused, so it decoded eagerly and
    an sdpa-vs-eager comparison mixed two engines."""
    import copy

    model = copy.deepcopy(llama_1b)
    model.set_attn_implementation("eager")
    try:
        with GenerationSession(model, batch=1, prompt_len=P, gen_len=G) as s:
            assert s.engine == "cuda-graph" and s.own_step_mask, s.note
            assert s.max_abs_diff == 0.0  # our mask == transformers' own, to the bit
            ours = s.request()
            ids = s.input_ids.clone()
        with GenerationSession(model, batch=2, prompt_len=P, gen_len=8, compile=True) as s:
            assert s.engine == "cuda-graph+compile" and s.own_step_mask, s.note
            print(f"eager attention, compiled step: rel err {s.rel_err:.3g} (tolerance {s.compile_tol:.3g})")
        assert_tokens_follow_generate(model, ids, ours, "graph engine, eager attention")
    finally:
        del model
        torch.cuda.empty_cache()


def test_memory_and_state_restored(llama_1b):
    model = llama_1b
    model.train()
    cache_before = getattr(model, "_cache", None)
    before = torch.cuda.memory_allocated()
    try:
        rep = measure_latency(model, batch=16, prompt_len=P, gen_len=G, energy=False, warmup=1, repeats=2,
                              min_time=0, progress=False)
        assert rep.engine == "cuda-graph+compile" and rep.cuda_graph, rep.notes
        assert model.training and all(m.training for m in model.modules())
        assert getattr(model, "_cache", None) is cache_before
        assert torch.cuda.memory_allocated() == before
        assert rep.roofline["mbu"] > 0 and rep.roofline["peak_source"]
    finally:
        model.eval()


def test_out_of_memory_is_one_line_and_released(llama_1b, ip):
    import gc

    gc.collect()  # what an earlier failed test left in reference cycles: the magic's own collection would free it
    before = torch.cuda.memory_allocated()
    with pytest.raises(GenerationOutOfMemory, match=r"^out of memory on cuda:0 at batch 4096 x 8192 tokens"):
        measure_latency(llama_1b, batch=4096, prompt_len=8000, gen_len=192, energy=False, progress=False)
    assert torch.cuda.memory_allocated() == before
    ip.user_ns["m1b"] = llama_1b
    with pytest.raises(UsageError, match=r"^out of memory .* try a smaller --batch"):
        ip.run_line_magic("elana_latency", "m1b --batch 4096 --prompt-len 8000 --gen-len 192 -q")
    assert torch.cuda.memory_allocated() == before
    rep = ip.run_line_magic("elana_latency", "m1b --ttft --prompt-len 64 --gen-len 4 --no-energy -o -q")
    assert rep.ttft_ms["n"] > 0  # the notebook is still usable


def test_magic_all_phases_with_energy(llama_1b, ip):
    ip.user_ns["m1b"] = llama_1b
    rep = ip.run_line_magic("elana_latency", "m1b --prompt-len 128 --gen-len 32 --min-time 0.5 -o")
    print(rep.to_text())
    assert rep.cuda_graph
    e = rep.energy
    assert e["j_per_prompt"] > 0 and e["j_per_token"] > 0 and e["j_per_request"] > 0, e.get("reason")
    assert e["request_split_j"]["prefill"] > 0 and e["request_split_j"]["decode"] > 0
    assert e["tokens_per_j"] > 0 and e["method"]
    assert rep.roofline["mbu"] and rep.roofline["mfu"]


def test_no_cuda_graph_is_eager(llama_1b):
    rep = measure_latency(llama_1b, phases=["tpot"], prompt_len=64, gen_len=8, cuda_graph=False, energy=False,
                          warmup=0, repeats=2, min_time=0, progress=False)
    assert rep.engine == "eager" and not rep.cuda_graph
