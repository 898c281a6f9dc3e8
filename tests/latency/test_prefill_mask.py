"""The prefill's own causal mask (given in the capture's warm-up and in the capture alike) equals transformers' own
prefill: the same logits as with no mask (SDPA's is_causal), for SDPA and eager attention, on a CPU."""

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import StaticCache

from elana_magic.latency.prefill import prefill_mask


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_prefill_mask_gives_transformers_own_prefill(tiny_llama, attention):
    model = copy.deepcopy(tiny_llama).eval()
    model.set_attn_implementation(attention)
    batch, prompt_len, gen_len = 2, 7, 5
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(0))

    def prefill(mask_of):
        cache = StaticCache(config=model.config, max_cache_len=prompt_len + gen_len)
        s = SimpleNamespace(model=model, _cache=cache, _static_layers=lambda: cache.layers, dtype=torch.float32,
                            device=torch.device("cpu"), batch=batch, prompt_len=prompt_len, gen_len=gen_len)
        with torch.inference_mode():
            return model(input_ids=ids, past_key_values=cache, attention_mask=mask_of(s), use_cache=True).logits

    masks = []
    ours = prefill(lambda s: masks.append(prefill_mask(s)) or masks[-1])
    assert masks[0] is not None and masks[0].shape == (batch, 1, prompt_len, prompt_len + gen_len)
    theirs = prefill(lambda s: None)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
