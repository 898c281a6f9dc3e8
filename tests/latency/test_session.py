"""GenerationSession on CPU: greedy tokens equal generate()'s, positions grow, the model comes back as it was."""

import pytest
import torch

from elana_magic.latency.session import (COMPILE_REL_TOL_PER_LAYER, GenerationInputError, GenerationSession, compile_tolerance,
                                random_prompt, top1_gap_tolerance)


def _generate(model, ids, gen_len):
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen_len,
                         min_new_tokens=gen_len, do_sample=False)
    return out[:, ids.shape[1]:]


def test_request_matches_generate(tiny_llama):
    with GenerationSession(tiny_llama, batch=2, prompt_len=16, gen_len=12) as s:
        assert s.engine == "eager"
        tokens = s.request()
        assert s.position == 16 + 11
    assert tokens.shape == (2, 12)
    assert torch.equal(tokens, _generate(tiny_llama, random_prompt(tiny_llama, 2, 16), 12))


def test_given_ids_set_prompt_len(tiny_llama):
    ids = torch.arange(5, 25)
    with GenerationSession(tiny_llama, batch=3, gen_len=4, input_ids=ids) as s:
        assert (s.batch, s.prompt_len) == (3, 20)
        first = s.prefill()
    assert first.shape == (3, 1)


def test_decode_needs_prefill_and_stops_when_full(tiny_llama):
    with GenerationSession(tiny_llama, prompt_len=8, gen_len=3) as s:
        with pytest.raises(RuntimeError, match="prefill"):
            s.decode_step()
        s.prefill()
        assert s.steps_left == 2
        s.decode_step(), s.decode_step()
        with pytest.raises(RuntimeError, match="full"):
            s.decode_step()


def test_cuda_graph_on_cpu_falls_back_with_note(tiny_llama):
    with GenerationSession(tiny_llama, prompt_len=8, gen_len=2, cuda_graph=True) as s:
        assert s.engine == "eager" and "CUDA" in s.note


def test_compile_on_cpu_is_eager(tiny_llama):
    with GenerationSession(tiny_llama, prompt_len=8, gen_len=2, compile=True) as s:
        assert s.engine == "eager" and not s.compile and s.compile_s is None
    assert compile_tolerance(tiny_llama) == COMPILE_REL_TOL_PER_LAYER * tiny_llama.config.num_hidden_layers


def test_top1_gap_tolerance_grows_with_depth_like_the_relative_error():
    assert top1_gap_tolerance(torch.float32) == 1e-4 and top1_gap_tolerance(torch.bfloat16) == 2e-2
    assert top1_gap_tolerance(torch.float32, 0.096) == 1e-4  # fp32 compiled kernels round 5 orders less
    assert top1_gap_tolerance(torch.bfloat16, 0.003 * 4) == 2e-2  # shallow: the graph's own floor
    # the 8B shape at batch 16 on the H200: relative error 0.0565 (tolerance 0.096), gap 0.156 of max logit 6.25
    assert 0.156 <= top1_gap_tolerance(torch.bfloat16, COMPILE_REL_TOL_PER_LAYER * 32) * 6.25


def test_state_restored(tiny_llama):
    model = tiny_llama
    model.train()
    model.model.layers[0].mlp.eval()
    model.lm_head.weight.requires_grad_(False)
    model.generation_config.max_new_tokens = 77
    try:
        with GenerationSession(model, prompt_len=8, gen_len=4) as s:
            assert not model.training
            s.request()
        assert model.training and not model.model.layers[0].mlp.training
        assert model.lm_head.weight.requires_grad is False
        assert model.model.embed_tokens.weight.requires_grad is True
        assert model.generation_config.max_new_tokens == 77
    finally:
        model.eval()
        model.lm_head.weight.requires_grad_(True)
        model.generation_config.max_new_tokens = None


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt_len=1000, gen_len=100), "exceeds the model's maximum of 1024 positions"),
    (dict(prompt_len=0), "prompt length must be a positive integer"),
    (dict(gen_len=0), "generated length must be a positive integer"),
    (dict(batch=0), "batch must be a positive integer"),
])
def test_bad_lengths(tiny_llama, kwargs, match):
    with pytest.raises(GenerationInputError, match=match):
        GenerationSession(tiny_llama, **kwargs)


def test_no_lm_head(tiny_llama):
    with pytest.raises(GenerationInputError, match="no LM head"):
        GenerationSession(tiny_llama.model)


def test_restart_decode_repeats_the_same_steps(tiny_llama):
    with GenerationSession(tiny_llama, batch=2, prompt_len=12, gen_len=6) as s:
        full = s.request()
        again = [s.restart_decode()] and [s.decode_step().clone() for _ in range(5)]
        assert s.position == 12 + 5
    assert torch.equal(torch.cat(again, 1), full[:, 1:])


def _static_decode(session, own_mask: bool, steps: int) -> list[torch.Tensor]:
    """Prefill into a StaticCache, then eager steps as the captured step runs them (no capture on a CPU)."""
    from transformers import StaticCache

    session._cache = StaticCache(config=session.model.config, max_cache_len=session.prompt_len + session.gen_len)
    session._next = torch.zeros(session.batch, 1, dtype=torch.long)
    out = []
    with torch.inference_mode():
        session._prefill_static()
        session._prepare_step_mask()
        for _ in range(steps):
            logits = session._forward(session._next, session._cache, session._step_mask() if own_mask else None)[:, -1]
            session._next = logits.argmax(-1, keepdim=True)
            out.append(logits.float())
    return out


def test_eager_attention_step_mask_matches_transformers_own(tiny_llama):
    import copy

    eager = copy.deepcopy(tiny_llama)
    eager.set_attn_implementation("eager")
    with GenerationSession(eager, batch=2, prompt_len=9, gen_len=6) as s:
        theirs = _static_decode(s, own_mask=False, steps=5)
        ours = _static_decode(s, own_mask=True, steps=5)
        assert s.own_step_mask
        assert s._step_mask().shape == (2, 1, 1, 15)
    for a, b in zip(theirs, ours):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_step_mask_only_for_eager_attention_without_sliding_layers(tiny_llama):
    from transformers import MistralConfig

    from elana_magic.models import PRESETS, random_model

    with GenerationSession(tiny_llama, prompt_len=8, gen_len=3) as s:  # sdpa: transformers' mask as before
        _static_decode(s, own_mask=False, steps=1)
        assert not s.own_step_mask and s._step_mask() is None
    shape = {k: v for k, v in PRESETS["tiny-llama"].items() if k != "model_type"}
    sliding = random_model(MistralConfig(**shape, sliding_window=4, attn_implementation="eager"))
    with GenerationSession(sliding, prompt_len=8, gen_len=3) as s:  # its layers keep transformers' window mask
        _static_decode(s, own_mask=False, steps=1)
        assert not s.own_step_mask
