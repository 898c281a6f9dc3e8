"""Regional vs whole-model compiled decode on a GPU: one compiled frame for every layer, reused by the next
session, the same greedy tokens as eager, the model left without compile hooks."""

import torch

from elana_magic.latency.session import GenerationSession, repeated_blocks
from elana_magic.models import preset_config, random_model


def _tokens(model, **kwargs):
    with GenerationSession(model, batch=2, prompt_len=24, gen_len=12, **kwargs) as s:
        engine, frames, reused, rel_err, tol, note = (s.engine, s.compile_frames, s.compile_reused, s.rel_err,
                                                      s.compile_tol, s.note)
        tokens = s.request()
    return tokens, engine, frames, reused, rel_err, tol, note


def test_regional_shares_one_frame_and_matches_eager_and_whole():
    torch._dynamo.reset()
    model = random_model(preset_config("tiny-llama", num_hidden_layers=6), dtype=torch.float32, device="cuda")
    eager, *_ = _tokens(model, cuda_graph=False)
    regional, engine, frames, reused, rel_err, tol, note = _tokens(model, compile="regional")
    assert engine == "cuda-graph+compile", note
    assert frames == 1 and reused is False  # six layers, one compiled frame
    assert rel_err <= tol
    assert torch.equal(regional, eager)
    again = _tokens(model, compile=True)
    assert again[2] == 0 and again[3] is True  # the next session of the shape compiles nothing
    whole, engine, *_ = _tokens(model, compile="whole")
    assert engine == "cuda-graph+compile"
    assert torch.equal(whole, eager)
    assert all(b.__dict__.get("_compiled_call_impl") is None for b in repeated_blocks(model))
    del model
    torch.cuda.empty_cache()
