"""A measurement's inputs and their checks: the model's device, dtype and vocabulary, the prompt (random ids or a
tokenized text), lengths against the model's positions, out-of-memory recognition, and the model state a
measurement may change (saved and put back)."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch

from .errors import GenerationInputError, GenerationOutOfMemory

def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def max_positions(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def vocab_size(model: torch.nn.Module) -> int:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    size = getattr(config, "vocab_size", None)
    if not size:
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        size = getattr(emb, "num_embeddings", None)
    if not size:
        raise GenerationInputError(f"{type(model).__name__} has no vocabulary size in its config: pass input ids or --prompt")
    return int(size)


def check_can_generate(model: torch.nn.Module) -> None:
    """A causal LM: an output embedding (LM head) that turns hidden states into logits."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise GenerationInputError(
            f"{type(model).__name__} has no LM head and cannot generate: pass a model of the "
            "...ForCausalLM kind (e.g. AutoModelForCausalLM)"
        )


def random_prompt(model: torch.nn.Module, batch: int, prompt_len: int, seed: int = 0) -> torch.Tensor:
    """``batch x prompt_len`` token ids drawn uniformly from the vocabulary (seeded, on CPU)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size(model), (batch, prompt_len), generator=gen, dtype=torch.long)


def check_lengths(model: torch.nn.Module, batch: int, prompt_len: int, gen_len: int) -> None:
    """Lengths the model can hold (the values themselves are checked once, by ``LatencySettings``)."""
    limit = max_positions(model)
    if limit is not None and prompt_len + gen_len > limit:
        raise GenerationInputError(
            f"prompt length {prompt_len} + generated length {gen_len} = {prompt_len + gen_len} exceeds the "
            f"model's maximum of {limit} positions: shorten --prompt-len or --gen-len"
        )


def memory_estimate(model: torch.nn.Module, batch: int, prompt_len: int, gen_len: int) -> dict[str, int] | None:
    """A floor of what a request allocates beside the weights: the cache (analytic, ``size.cache_shapes``), the
    prompt's ids, the prefill's hidden states and MLP activations, the last position's logits. None: unknown."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    try:
        from ..size.cache_shapes import cache_layout

        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        hidden = int(getattr(text, "hidden_size", 0) or 0)
        inter = int(getattr(text, "intermediate_size", 0) or 0) or 4 * hidden
        itemsize = model_dtype(model).itemsize
        layout = cache_layout(config)
        cache = sum(kv + ssm for kv, ssm in layout.layer_bytes(batch, prompt_len + gen_len, itemsize, 4)) \
            if layout.known else 0
        tokens = batch * prompt_len
        activations = tokens * 8 + tokens * (2 * hidden + inter) * itemsize + batch * vocab_size(model) * 4
    except Exception:  # noqa: BLE001 - an estimate for a check: a config it can't read is not checked
        return None
    return {"cache_bytes": int(cache), "activation_bytes": int(activations), "bytes": int(cache + activations)}


def check_cpu_memory(model: torch.nn.Module, batch: int, prompt_len: int, gen_len: int) -> None:
    """On the CPU, refuse before allocating a request whose estimated cache and activations exceed the memory
    available (an allocation that size is not refused by Linux: the machine swaps or the process is killed)."""
    from ..core.units import format_bytes
    from ..size.fit import system_memory

    need = memory_estimate(model, batch, prompt_len, gen_len)
    if need is None:
        return
    try:
        available = system_memory()
    except (OSError, KeyError, ValueError):
        return
    if need["bytes"] > available["bytes"]:
        raise GenerationOutOfMemory(
            f"{out_of_memory_message(batch, prompt_len, gen_len, 'cpu').split(': try')[0]}: about "
            f"{format_bytes(need['bytes'])} needed (cache {format_bytes(need['cache_bytes'])} + activations "
            f"{format_bytes(need['activation_bytes'])}, estimated before allocating), "
            f"{format_bytes(available['bytes'])} available: try a smaller --batch, --prompt-len or --gen-len")


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's "can't allocate memory" (a plain RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def out_of_memory_message(batch: int, prompt_len: int, gen_len: int, device: Any) -> str:
    return (
        f"out of memory on {device} at batch {batch} x {prompt_len + gen_len} tokens (prompt {prompt_len} "
        f"+ generated {gen_len}): try a smaller --batch, --prompt-len or --gen-len"
    )


class ModelState:
    """What a measurement may change on a model, saved so that it can be put back exactly."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.training = {name: m.training for name, m in model.named_modules()}
        self.requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        self.generation_config = copy.deepcopy(getattr(model, "generation_config", None))
        config = getattr(model, "config", None)
        self.use_cache = getattr(config, "use_cache", None)
        self.cache_attrs = {k: v for k, v in vars(model).items() if "cache" in k.lower()}

    def restore(self) -> None:
        model = self.model
        for name, m in model.named_modules():
            if name in self.training:
                m.training = self.training[name]
        for name, p in model.named_parameters():
            if name in self.requires_grad:
                p.requires_grad_(self.requires_grad[name])
        if self.generation_config is not None:
            model.generation_config = self.generation_config
        config = getattr(model, "config", None)
        if config is not None and self.use_cache is not None:
            config.use_cache = self.use_cache
        for key in [k for k in vars(model) if "cache" in k.lower() and k not in self.cache_attrs]:
            delattr(model, key)
        for key, value in self.cache_attrs.items():
            setattr(model, key, value)


def _cache_kwarg(model: torch.nn.Module) -> str:
    """transformers >= 5.20 names the cache argument ``cache``; earlier ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _accepts(model: torch.nn.Module, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def prompt_ids(tokenizer, prompt: str, batch: int) -> torch.Tensor:
    if tokenizer is None:
        raise GenerationInputError("a text prompt needs a tokenizer: pass --tokenizer TOK (or tokenizer=...)")
    if not callable(tokenizer):
        raise GenerationInputError(f"the tokenizer is a {type(tokenizer).__name__}, which cannot encode text")
    try:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        ids = torch.as_tensor(ids)
    except Exception as exc:  # noqa: BLE001 - any callable may be passed as a tokenizer
        raise GenerationInputError(
            f"the tokenizer did not return token ids for the prompt ({type(exc).__name__}: {exc}): pass a "
            "tokenizer that returns {'input_ids': ...} when called with return_tensors='pt'") from None
    if ids.dtype.is_floating_point or ids.is_complex() or ids.dtype == torch.bool or ids.ndim not in (1, 2):
        raise GenerationInputError(f"the tokenizer returned {ids.dtype} input_ids of shape {tuple(ids.shape)}, "
                                   "not integer token ids: pass a transformers tokenizer")
    if ids.ndim == 1:
        ids = ids.unsqueeze(0)
    if ids.numel() == 0:
        raise GenerationInputError("the prompt encodes to zero tokens: give some text")
    return ids[:1].expand(batch, -1)
