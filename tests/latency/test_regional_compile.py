"""Regional compilation on CPU: mode selection, the decoder stack found, one compiled artifact shared by every
layer (a counting backend stands in for Inductor), the same logits as eager, the model left as it was."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from transformers import StaticCache

from elana_magic.latency.session import (GenerationInputError, GenerationSession, _cache_kwarg, _layer_forward,
                                         compile_mode, regional_compiled, repeated_blocks)
from elana_magic.models import preset_config, random_model


@pytest.mark.parametrize("value, mode", [(True, "regional"), ("regional", "regional"), ("whole", "whole"),
                                         ("WHOLE", "whole"), (False, None), (None, None)])
def test_compile_mode(value, mode):
    assert compile_mode(value) == mode


@pytest.mark.parametrize("value", ["fast", 1.5, "max-autotune"])
def test_compile_mode_refuses_other_values(value):
    with pytest.raises(GenerationInputError, match="regional"):
        compile_mode(value)


def test_session_on_cpu_compiles_nothing(tiny_llama):
    with GenerationSession(tiny_llama, prompt_len=4, gen_len=3, compile="whole") as s:
        assert (s.engine, s.compile_mode, s.compile) == ("eager", None, False)
    with pytest.raises(GenerationInputError):
        GenerationSession(tiny_llama, prompt_len=4, gen_len=3, compile="fast")


def test_repeated_blocks(tiny_llama):
    assert repeated_blocks(tiny_llama) is tiny_llama.model.layers
    assert repeated_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())) is None


@pytest.fixture(scope="module")
def four_layers():
    return random_model(preset_config("tiny-llama", num_hidden_layers=4))


def _decode_logits(model, blocks=None, compiled=None):
    """Prefill 12 tokens into a static cache, then one decode step (regional when ``compiled`` is given)."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=gen)
    step = torch.randint(0, model.config.vocab_size, (2, 1), generator=gen)
    cache = StaticCache(config=model.config, max_cache_len=16)
    kw = {_cache_kwarg(model): cache, "use_cache": True}
    with torch.inference_mode():
        model(input_ids=ids, **kw)
        if compiled is None:
            return model(input_ids=step, **kw).logits
        with regional_compiled(blocks, cache, compiled):
            return model(input_ids=step, **kw).logits


def test_one_compiled_block_serves_every_layer(four_layers):
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(_layer_forward, backend=counter, dynamic=False)
    blocks = repeated_blocks(four_layers)
    regional = _decode_logits(four_layers, blocks, compiled)
    assert counter.frame_count == 1  # four layers, one artifact: the layer index is never guarded on
    torch.testing.assert_close(regional, _decode_logits(four_layers))
    _decode_logits(four_layers, blocks, compiled)
    assert counter.frame_count == 1  # a second session of the same shape reuses it
    assert all("_compiled_call_impl" not in vars(b) or b._compiled_call_impl is None for b in blocks)


def test_hooks_removed_on_error(four_layers):
    blocks = repeated_blocks(four_layers)
    cache = StaticCache(config=four_layers.config, max_cache_len=8)
    with pytest.raises(RuntimeError, match="boom"):
        with regional_compiled(blocks, cache, compiled=lambda *a, **k: None):
            raise RuntimeError("boom")
    assert all(b._compiled_call_impl is None for b in blocks)
