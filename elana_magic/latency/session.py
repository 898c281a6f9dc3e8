"""Phase runners: the inputs, one prefill, one decode step, one request, on the model as loaded.

``GenerationSession`` is what the latency and profile measurements drive. It builds the prompt
(random ids from the vocabulary, seeded, or given ids), runs a prefill on a fresh cache with logits
for the last position only, and decodes greedily with a growing context and correct positions.

Decode engines:

* ``"cuda-graph"`` (CUDA default): a ``StaticCache`` sized to prompt + generation, with one decode
  step captured in a ``torch.cuda.CUDAGraph``. transformers 5.x static layers keep an on-device
  ``cumulative_length`` that the captured step advances itself, so each replay writes the next slot
  and the model derives the next position from it. The graph's logits are checked once against an
  eager step from the same state; on a mismatch or a capture failure the session falls back to eager
  and says why in ``note``.
* ``"cuda-graph+compile"`` (``compile=True``): the same, but the captured step runs Inductor-compiled
  code (fused RMSNorm/RoPE/SiLU/residual kernels). ``compile="regional"`` (what ``True`` means) compiles
  the repeated decoder block once and runs every layer through that one compiled artifact (each layer
  sees only its own cache layer, so no guard tells the layers apart); ``compile="whole"`` compiles the
  whole forward (tens of seconds per shape). Both are kept in-process by torch.compile's cache (a later
  session of the same shape reuses them, ``compile_reused``) and on disk by Inductor's FX graph and
  AOTAutograd caches (a new process of the same shape skips code generation). Fused bf16 kernels round differently from eager ones, so the check is on the
  relative logit error and on the greedy token (up to a near-tie of eager's top logits); on a failure the
  session falls back to the uncompiled graph, with a note.
* ``"eager"`` (CPU, ``cuda_graph=False``): a ``DynamicCache`` grown one token per step.

On exit the model's training flags, ``requires_grad``, generation config and cache attributes are
put back, and the memory the session allocated (cache, graph pool) is released.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import time
from typing import Any

import torch

from .devices import cuda_indices, model_devices
from .devices import synchronize as synchronize_devices


class GenerationInputError(ValueError):
    """Lengths, model or prompt that cannot be measured (one line, for UsageError)."""


class GenerationOutOfMemory(RuntimeError):
    """The batch and length did not fit in device memory (one line; memory already released)."""


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
    for name, value in (("batch", batch), ("prompt length", prompt_len), ("generated length", gen_len)):
        if not isinstance(value, int) or value <= 0:
            raise GenerationInputError(f"{name} must be a positive integer, got {value!r}")
    limit = max_positions(model)
    if limit is not None and prompt_len + gen_len > limit:
        raise GenerationInputError(
            f"prompt length {prompt_len} + generated length {gen_len} = {prompt_len + gen_len} exceeds the "
            f"model's maximum of {limit} positions: shorten --prompt-len or --gen-len"
        )


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


_SIDE_STREAMS: dict[int, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> "torch.cuda.Stream":
    """One warm-up stream per device, reused: cuBLAS keeps a workspace per stream, so a new stream per
    session would hold more memory each time (and clearing them all would change the user's cuBLAS state)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SIDE_STREAMS:
        _SIDE_STREAMS[index] = torch.cuda.Stream(index)
    return _SIDE_STREAMS[index]


def _model_logits(model: torch.nn.Module, kwargs: dict) -> torch.Tensor:
    return model(**kwargs).logits


_COMPILED: dict[str, Any] = {}

# Variants of the compiled step this process may keep (one per model x batch x cache length): torch.compile's
# default of 8 per function is raised to this while our step compiles (``_recompile_room``), as a grid reaches
# 8 quickly. Past it, dynamo runs the step uncompiled: ``CompileWatch`` sees it and the engine is named for
# what ran.
COMPILE_VARIANTS = 64

COMPILE_MODES = ("regional", "whole")


def compile_mode(compile: bool | str | None) -> str | None:
    """``compile`` as a mode: True -> "regional" (the default), "whole", "regional"; False/None -> None."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return "regional"
    if isinstance(compile, str) and compile.lower() in COMPILE_MODES:
        return compile.lower()
    raise GenerationInputError(f"compile must be True, False, 'regional' or 'whole', got {compile!r}")


def _compiled_logits():
    """``_model_logits`` compiled once per process (Inductor, static shapes); torch.compile's cache holds one
    entry per model and shape, so a second session of the same shape reuses the first one's kernels."""
    if "step" not in _COMPILED:
        _COMPILED["step"] = torch.compile(_model_logits, dynamic=False)
    return _COMPILED["step"]


def graphs_supported(device: torch.device) -> bool:
    """CUDA graphs (and so the compiled engine) need a CUDA device."""
    return device.type == "cuda"


_COMPILED_SHAPES: set[tuple] = set()


class CompileWatch:
    """Around the compiled step's first calls: did dynamo compile a new variant, reuse one, or fall back?

    A new variant bumps ``torch._dynamo.utils.counters["frames"]["ok"]``; a fallback (recompile limit
    hit) logs "torch._dynamo hit config.recompile_limit" once and then runs the step uncompiled silently
    (no counter moves), so a shape this process never compiled that compiles nothing fell back as well."""

    def __init__(self, key: tuple):
        import logging

        self.key = key
        self._logger = logging.getLogger("torch._dynamo.convert_frame")
        self.limit_message: str | None = None
        self.variant: str | None = None

    def __enter__(self) -> "CompileWatch":
        import logging

        from torch._dynamo.utils import counters

        watch = self

        class _Hook(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                text = record.getMessage()
                if "hit config." in text:
                    watch.limit_message = text.splitlines()[0].strip()

        self._ok = counters["frames"]["ok"]
        self._hook = _Hook(level=logging.WARNING)
        self._logger.addHandler(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        from torch._dynamo.utils import counters

        self._logger.removeHandler(self._hook)
        compiled = counters["frames"]["ok"] > self._ok
        if self.limit_message is not None or not (compiled or self.key in _COMPILED_SHAPES):
            self.variant = "fell back"
        else:
            self.variant = "new" if compiled else "reused"
            _COMPILED_SHAPES.add(self.key)

    @property
    def fell_back(self) -> bool:
        return self.variant == "fell back"

    def reason(self) -> str:
        if self.limit_message:
            return self.limit_message
        try:
            from torch._dynamo import config

            limit = getattr(config, "recompile_limit", getattr(config, "cache_size_limit", None))
        except Exception:  # noqa: BLE001
            limit = None
        return f"torch.compile compiled no variant for this shape (its recompile limit, {limit} or our"\
               f" {COMPILE_VARIANTS} while compiling, was reached earlier)"


def _layer_forward(layer: torch.nn.Module, /, *args, **kwargs):
    return layer.forward(*args, **kwargs)


def _compiled_layer():
    """One compiled decoder-block forward for every layer of every model (the module is an argument, its
    parameters graph inputs, so identical layers pass the same guards and share one artifact)."""
    if "layer" not in _COMPILED:
        _COMPILED["layer"] = torch.compile(_layer_forward, dynamic=False)
    return _COMPILED["layer"]


def repeated_blocks(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The model's stack of decoder layers: the longest ModuleList of >= 2 modules of one type (None if none)."""
    best = None
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) >= 2:
            if len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best)):
                best = module
    return best


class _LayerCacheView:
    """The session's cache as one decoder layer sees it: its own cache layer, whatever ``layer_idx`` it passes.

    The layer index is the one thing that differs between layers; read through the real cache it becomes a
    guarded constant and every layer compiles again."""

    def __init__(self, layer) -> None:
        self.layer = layer

    def update(self, key_states, value_states, layer_idx=None, *args, **kwargs):
        return self.layer.update(key_states, value_states, *args, **kwargs)


def _regional_call(compiled, layer, cache, view, /, *args, **kwargs):
    for key in ("cache", "past_key_values"):
        if kwargs.get(key) is cache:
            kwargs[key] = view
    return compiled(layer, *args, **kwargs)


@contextlib.contextmanager
def regional_compiled(blocks: torch.nn.ModuleList, cache, compiled=None):
    """Route every block's call through one compiled block forward while inside (nothing changed after).

    Uses the hook ``nn.Module.compile`` uses (``_compiled_call_impl``), set only for the compiled step's warm-up
    and capture (the graph replays the kernels) and put back on exit, so the model stays as the user had it."""
    compiled = compiled or _compiled_layer()
    layers = list(getattr(cache, "layers", []))
    if len(layers) < len(blocks):
        raise RuntimeError(f"regional compile needs one cache layer per block ({len(layers)} for {len(blocks)})")
    saved = [block.__dict__.get("_compiled_call_impl") for block in blocks]
    try:
        for block, cache_layer in zip(blocks, layers):
            block._compiled_call_impl = functools.partial(_regional_call, compiled, block, cache, _LayerCacheView(cache_layer))
        yield
    finally:
        for block, value in zip(blocks, saved):
            block._compiled_call_impl = value


def _compile_counters() -> dict:
    """Dynamo's process-wide counts: frames it compiled and graphs it produced (to tell reuse from compiling)."""
    try:
        from torch._dynamo.utils import counters

        return {"frames": int(counters["stats"]["unique_graphs"]), "calls": int(counters["stats"]["calls_captured"])}
    except Exception:  # noqa: BLE001 - private API
        return {}


@contextlib.contextmanager
def _recompile_room(n: int):
    """Let torch.compile keep ``n`` more entries per code object during our compile (its default is 8; one per
    shape, and whole-model compiles of several models share one function), restored on exit."""
    import torch._dynamo.config as cfg

    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    current = getattr(cfg, name)
    with cfg.patch(**{name: max(current, n)}):
        yield


# Fused bf16 kernels vs eager: relative L2 error of the last-position logits, per decoder layer (rounding
# differences add up layer by layer: measured on H100, random bf16 weights, about 1.8e-3 per layer for
# Llama-3.2-1B (16 layers, 2.8%) and Llama-3.1-8B (32 layers, 5.7%)). A wrong step (stale slot, wrong
# position) is off by O(1) and picks other tokens.
COMPILE_REL_TOL_PER_LAYER = 3e-3


def top1_gap_tolerance(dtype: torch.dtype, compile_tol: float | None = None) -> float:
    """How far (relative to the largest logit) the token a graph picks may score below eager's best.

    Uncompiled graph: 1e-4 in fp32, 2e-2 in bf16/fp16. Compiled: the rounding of fused kernels grows with
    depth like the relative error (``compile_tolerance``), so the gap is allowed the same relative size
    (on the H200 the 8B shape at batch 16 had relative error 0.057, inside 0.096, and a top-1 gap of 2.5%
    of the largest logit, which a fixed 2% refused). fp32 fused kernels round 5 orders less: 1e-4 stays."""
    if dtype == torch.float32:
        return 1e-4
    return max(2e-2, compile_tol or 0.0)


def compile_tolerance(model: torch.nn.Module) -> float:
    """Relative L2 logit error allowed between the compiled step and an eager one."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    layers = getattr(config, "num_hidden_layers", None)
    return COMPILE_REL_TOL_PER_LAYER * (layers if isinstance(layers, int) and layers > 0 else 32)


class GenerationSession:
    """Prefill, decode steps and whole requests on ``model``, greedy, exactly ``gen_len`` tokens.

    ``cuda_graph``: None = graph on CUDA, eager elsewhere; True = try the graph (fall back with a note);
    False = eager. ``input_ids``: a ``(batch, prompt_len)`` or ``(prompt_len,)`` tensor to use instead of
    random ids (its length then sets ``prompt_len``). ``compile``: capture an Inductor-compiled decode
    step in the graph: True or "regional" (one compiled decoder block shared by all layers), "whole" (the whole
    forward); falls back to the uncompiled graph with a note.
    """

    def __init__(self, model: torch.nn.Module, batch: int = 1, prompt_len: int = 512, gen_len: int = 128,
                 cuda_graph: bool | None = None, input_ids: torch.Tensor | None = None, seed: int = 0,
                 check: bool = True, compile: bool | str = False):
        if not isinstance(model, torch.nn.Module):
            raise GenerationInputError(f"expected a torch.nn.Module, got {type(model).__name__}")
        check_can_generate(model)
        if model_device(model).type == "meta":
            raise GenerationInputError(f"{type(model).__name__} is on the meta device (shapes only, no weights): "
                                       "load it with weights to time it (%elana_size sizes a meta model)")
        if input_ids is not None:
            input_ids = torch.as_tensor(input_ids, dtype=torch.long)
            if input_ids.ndim == 1:
                input_ids = input_ids.unsqueeze(0)
            if input_ids.shape[0] == 1 and batch > 1:
                input_ids = input_ids.expand(batch, -1)
            batch, prompt_len = int(input_ids.shape[0]), int(input_ids.shape[1])
        check_lengths(model, batch, prompt_len, gen_len)
        self.model = model
        self.batch, self.prompt_len, self.gen_len = batch, prompt_len, gen_len
        self.device = model_device(model)   # where the inputs go (the first module's device)
        self.devices = model_devices(model)  # every device the model occupies (hf_device_map)
        self.dtype = model_dtype(model)
        self.seed = seed
        self._input_ids_arg = input_ids
        on_cuda = self.device.type == "cuda"
        self.want_graph = on_cuda if cuda_graph is None else bool(cuda_graph)
        self.check = check
        self.engine = "eager"
        self.note: str | None = None
        if self.want_graph and not graphs_supported(self.device):
            self.note = f"CUDA graphs need a CUDA device (model is on {self.device}): eager decode"
            self.want_graph = False
        if self.want_graph and len(cuda_indices(self.devices)) > 1:
            # A graph captures one device's stream; the other GPUs' kernels would run once, at capture.
            self.note = (f"the model spans {len(cuda_indices(self.devices))} GPUs (device_map): a CUDA graph "
                         "captures one GPU's stream, so decode runs eager")
            self.want_graph = False
        mode = compile_mode(compile)  # a bad value is refused on any device
        self.compile_mode = mode if self.want_graph else None   # "regional" | "whole" | None
        self.compile = self.compile_mode is not None
        self.compile_s: float | None = None   # wall time of the compiled step's first call (compilation)
        self.compile_info: dict[str, Any] | None = None  # what torch.compile did: variant new/reused/fell back
        self.compile_frames: int | None = None  # frames torch.compile compiled for this session (0 = all reused)
        self.compile_reused: bool | None = None  # True when the compiled code of an earlier session ran as is
        self._blocks = None
        self.rel_err: float | None = None     # relative L2 logit error of the graph step vs an eager step
        self.compile_tol = compile_tolerance(model)
        self.max_abs_diff: float | None = None
        self.position = 0          # tokens in the cache (host-side count)
        self.steps_done = 0        # decode steps since the last prefill
        self._state: ModelState | None = None
        self._cache = None
        self._graph = None
        self._next: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._first: torch.Tensor | None = None
        self._step_mask_parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.own_step_mask = False  # True when the captured step passes its own causal mask (eager attention)
        self._open = False

    # -- context -----------------------------------------------------------------------------------
    def __enter__(self) -> "GenerationSession":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "GenerationSession":
        """Save the model's state, build the inputs and the decode engine (capture and check the graph)."""
        if self._open:
            return self
        self._state = ModelState(self.model)
        self.model.eval()
        self._open = True
        out_of_memory = False
        try:
            ids = self._input_ids_arg
            if ids is None:
                ids = random_prompt(self.model, self.batch, self.prompt_len, self.seed)
            self.input_ids = ids.to(self.device).contiguous()
            self._cache_kw = _cache_kwarg(self.model)
            self._keep_kw = {"logits_to_keep": 1} if _accepts(self.model, "logits_to_keep") else {}
            self._setup_engine()
        except BaseException as exc:
            if not is_out_of_memory(exc):
                self.close()
                raise
            out_of_memory = True  # raised below, once the traceback (and the tensors its frames hold) is gone
        if out_of_memory:
            self.close()
            raise GenerationOutOfMemory(out_of_memory_message(self.batch, self.prompt_len, self.gen_len, self.device))
        return self

    def close(self) -> None:
        """Release the cache and graph memory and put the model back as it was (idempotent)."""
        if not self._open:
            return
        self._open = False
        self._graph = self._cache = self._next = self._logits = self._mask = self._first = None
        self._step_mask_parts = None
        self.input_ids = None
        self._decode_forward = None
        if cuda_indices(self.devices):
            synchronize_devices(self.devices)
            torch.cuda.empty_cache()
        if self._state is not None:
            self._state.restore()
            self._state = None

    # -- engines -----------------------------------------------------------------------------------
    def _setup_engine(self) -> None:
        if self.compile_mode == "regional":
            self._blocks = repeated_blocks(self.model)
            if self._blocks is None:
                self.compile_mode = "whole"
                self.note = "no repeated decoder blocks found: the whole forward is compiled"
        if self.compile:
            try:
                key = (id(self.model), self.compile_mode, self.batch, self.prompt_len + self.gen_len, str(self.dtype),
                       str(self.device))
                with CompileWatch(key) as watch:
                    self._setup_graph(compiled=True)
                self.compile_info = {"requested": f"cuda-graph+compile ({self.compile_mode})", "variant": watch.variant,
                                     "compile_s": self.compile_s if watch.variant == "new" else None,
                                     "first_call_s": self.compile_s}
                if watch.fell_back:
                    # dynamo ran the model's forward uncompiled, so the graph holds the eager step
                    self.compile_info["reason"] = watch.reason()
                    self.compile_reused = False
                    self.engine = "cuda-graph"
                    self.note = (f"compiled decode step not used: {watch.reason()}; the CUDA graph holds the"
                                 " eager step (--no-compile says so up front)")
                    return
                self.engine = "cuda-graph+compile"
                return
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # compile, capture or check failed: the uncompiled graph, visibly
                self._graph = self._cache = None
                torch.cuda.synchronize(self.device)
                torch.cuda.empty_cache()
                text = str(exc).strip().splitlines()
                self.note = (f"compiled decode step ({self.compile_mode}) not used ({type(exc).__name__}: "
                             f"{text[0] if text else ''}): CUDA graph of the eager step")
                self.compile_info = {"requested": f"cuda-graph+compile ({self.compile_mode})", "variant": "failed",
                                     "compile_s": None,
                                     "first_call_s": self.compile_s, "reason": self.note}
        if self.want_graph:
            try:
                self._setup_graph()
                self.engine = "cuda-graph"
                return
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # capture or check failed: eager, visibly
                self._graph = self._cache = None
                torch.cuda.synchronize(self.device)
                torch.cuda.empty_cache()
                text = str(exc).strip().splitlines()
                self.note = self.note or (
                    f"CUDA graph capture failed ({type(exc).__name__}: {text[0] if text else ''}): eager decode")
        self._setup_eager()
        self.engine = "eager"

    def _setup_eager(self) -> None:
        self._mask = torch.ones(self.batch, self.prompt_len + self.gen_len, dtype=torch.long, device=self.device)
        self._cache = None

    def _new_dynamic_cache(self):
        from transformers import DynamicCache

        config = getattr(self.model, "config", None)
        try:
            return DynamicCache(config=config)
        except Exception:  # noqa: BLE001 - an older or custom config
            return DynamicCache()

    def _forward(self, ids: torch.Tensor, cache, mask: torch.Tensor | None, compiled: bool = False):
        kwargs = {self._cache_kw: cache, "use_cache": True, **self._keep_kw}
        if mask is not None:
            kwargs["attention_mask"] = mask
        if compiled and self.compile_mode == "regional":
            with regional_compiled(self._blocks, cache):
                return self.model(input_ids=ids, **kwargs).logits
        if compiled:
            return _compiled_logits()(self.model, {"input_ids": ids, **kwargs})
        out = self.model(input_ids=ids, **kwargs)
        logits = getattr(out, "logits", None)
        if logits is None:
            raise GenerationInputError(f"{type(self.model).__name__} returns no logits: pass a ...ForCausalLM model")
        return logits

    def _setup_graph(self, compiled: bool = False) -> None:
        from transformers import StaticCache

        self._cache = StaticCache(config=self.model.config, max_cache_len=self.prompt_len + self.gen_len)
        self._next = torch.zeros(self.batch, 1, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            self._prefill_static()
            first = self._next.clone()
            self._prepare_step_mask()
            stream = _side_stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            before = _compile_counters() if compiled else {}
            room = _recompile_room(COMPILE_VARIANTS + 2 * len(self._blocks or ())) if compiled else contextlib.nullcontext()
            with torch.cuda.stream(stream), room:
                for i in range(3):  # warm-up on a side stream, each step rewound so slot P is reused
                    t0 = time.perf_counter()
                    self._forward(self._next, self._cache, self._step_mask(), compiled)
                    self._rewind(1)
                    if compiled and i == 0:
                        self.compile_s = time.perf_counter() - t0
            if compiled and before:
                self.compile_frames = _compile_counters().get("frames", 0) - before.get("frames", 0)
                self.compile_reused = self.compile_frames == 0
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self._forward(self._next, self._cache, self._step_mask(), compiled)
                self._logits = logits[:, -1, :]
                self._next.copy_(self._logits.argmax(-1, keepdim=True))
            self._graph = graph
            if self.check or compiled:
                self._check_graph(first, compiled)
            self._reset_static()

    def _prepare_step_mask(self) -> None:
        """Eager attention with full-attention layers only: the captured step builds its own causal mask.

        transformers 5.17's ``eager_mask`` makes ``torch.tensor(0.0, device=cuda)`` inside the step, a host-to-device
        copy that CUDA graph capture refuses, so an eager-attention model decoded eagerly while its sdpa original ran
        the graph. A 4D mask is used as given by every transformers 5.x; ours is built on the device from the cache's
        length, so it holds in the graph. The check against an eager step (transformers' own mask) still decides."""
        self._step_mask_parts = None
        self.own_step_mask = False
        config = getattr(self.model, "config", None)
        layers = self._static_layers()
        if getattr(config, "_attn_implementation", None) != "eager" or not layers:
            return
        sliding = any(getattr(layer, "is_sliding", False) for layer in layers)
        if sliding or len(layers) != len(getattr(self._cache, "layers", [])):
            return  # sliding-window or other layers have their own masks: transformers' path only
        length = self.prompt_len + self.gen_len
        embed = getattr(self.model, "get_input_embeddings", lambda: None)()
        dtype = getattr(getattr(embed, "weight", None), "dtype", self.dtype)  # transformers masks in the hidden states' dtype
        dtype = dtype if dtype.is_floating_point else self.dtype
        slots = torch.arange(length, device=self.device).view(1, 1, 1, length)
        open_ = torch.zeros((), dtype=dtype, device=self.device)
        closed = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=self.device)
        self._step_mask_parts = (slots, open_, closed)
        self.own_step_mask = True

    def _step_mask(self) -> torch.Tensor | None:
        """The decode step's additive mask, batch x 1 x 1 x slots: 0 up to the new token's slot, the dtype's min after."""
        if self._step_mask_parts is None:
            return None
        slots, open_, closed = self._step_mask_parts
        length = self._static_layers()[0].cumulative_length  # tokens cached = the new token's slot
        return torch.where(slots <= length, open_, closed).expand(self.batch, 1, 1, slots.shape[-1])

    def _check_graph(self, first: torch.Tensor, compiled: bool = False) -> None:
        """One replay vs one eager step from the same state: same greedy token, logits within tolerance.

        Compiled: relative L2 error <= ``compile_tolerance`` (scaled by depth) and, per row, the graph's token scores within
        ``top1_gap_tolerance`` of eager's best (a random-weight model's top two logits are often that close)."""
        self._next.copy_(first)
        self._graph.replay()
        graph_logits = self._logits.float().clone()
        self._rewind(1)
        eager_logits = self._forward(first, self._cache, None)[:, -1, :].float()
        diff = (graph_logits - eager_logits).abs().max().item()
        scale = max(1.0, eager_logits.abs().max().item())
        tol = top1_gap_tolerance(self.dtype, self.compile_tol if compiled else None)
        self.max_abs_diff = diff
        self.rel_err = ((graph_logits - eager_logits).norm() / eager_logits.norm().clamp_min(1e-12)).item()
        if compiled:
            picked = eager_logits.gather(-1, graph_logits.argmax(-1, keepdim=True)).squeeze(-1)
            gap = (eager_logits.max(-1).values - picked).max().item()
            if self.rel_err > self.compile_tol or gap > tol * scale:
                raise RuntimeError(f"compiled step's logits differ from eager: relative error {self.rel_err:.3g} "
                                   f"(tolerance {self.compile_tol:.3g}), top-1 gap {gap:.3g} (tolerance {tol * scale:.3g})")
            return
        same_token = torch.equal(graph_logits.argmax(-1), eager_logits.argmax(-1))
        if diff > tol * scale or not same_token:
            raise RuntimeError(f"graph logits differ from eager by {diff:.3g} (tolerance {tol * scale:.3g})")

    def _static_layers(self):
        return [layer for layer in getattr(self._cache, "layers", []) if torch.is_tensor(getattr(layer, "cumulative_length", None))]

    def _rewind(self, n: int) -> None:
        for layer in self._static_layers():
            layer.cumulative_length.sub_(n)

    def _reset_static(self) -> None:
        # Slots past the current length are masked out, so rewinding the length is a fresh cache.
        for layer in self._static_layers():
            layer.cumulative_length.zero_()
        self.position = 0
        self.steps_done = 0

    def _prefill_static(self) -> None:
        self._reset_static()
        logits = self._forward(self.input_ids, self._cache, None)
        self._next.copy_(logits[:, -1, :].argmax(-1, keepdim=True))

    # -- phases ------------------------------------------------------------------------------------
    @property
    def steps_left(self) -> int:
        """Decode steps possible before the next prefill (``gen_len - 1`` after a prefill)."""
        return max(0, self.gen_len - 1 - self.steps_done) if self.position else 0

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError("the session is closed: use it inside `with GenerationSession(...) as s:`")

    def prefill(self) -> torch.Tensor:
        """One prefill on a fresh cache, logits for the last position only; returns the first token ids."""
        self._require_open()
        with torch.inference_mode():
            if self._graph is not None:
                self._prefill_static()
            else:
                self._cache = self._new_dynamic_cache()
                logits = self._forward(self.input_ids, self._cache, self._mask[:, : self.prompt_len])
                self._next = logits[:, -1, :].argmax(-1, keepdim=True)
        self.position = self.prompt_len
        self.steps_done = 0
        self._first = self._next.clone()
        return self._next

    def restart_decode(self) -> None:
        """Back to just after the last prefill (prompt kept in the cache), to decode the same steps again.

        Each decode pass then runs over the same real, growing positions without paying a prefill."""
        self._require_open()
        if self.position == 0:
            raise RuntimeError("restart_decode() needs a prefill() first")
        with torch.inference_mode():
            if self._graph is not None:
                self._rewind(self.steps_done)
                self._next.copy_(self._first)
            else:
                if self.steps_done:  # negative = tokens to remove, in every transformers 4.5x/5.x
                    self._cache.crop(-self.steps_done)
                self._next = self._first
        self.position = self.prompt_len
        self.steps_done = 0

    def decode_step(self) -> torch.Tensor:
        """One greedy decode step, context growing by one; returns the new token ids (batch x 1)."""
        self._require_open()
        if self.position == 0:
            raise RuntimeError("decode_step() needs a prefill() first")
        if self.steps_done >= self.gen_len - 1:
            raise RuntimeError(
                f"the cache holds prompt {self.prompt_len} + {self.gen_len} tokens and is full: call prefill() again")
        with torch.inference_mode():
            if self._graph is not None:
                self._graph.replay()
            else:
                logits = self._forward(self._next, self._cache, self._mask[:, : self.position + 1])
                self._next = logits[:, -1, :].argmax(-1, keepdim=True)
        self.position += 1
        self.steps_done += 1
        return self._next

    def request(self) -> torch.Tensor:
        """Prefill + ``gen_len - 1`` decode steps: the ``batch x gen_len`` generated token ids."""
        self._require_open()
        out = torch.empty(self.batch, self.gen_len, dtype=torch.long, device=self.device)
        out[:, :1].copy_(self.prefill())
        for i in range(1, self.gen_len):
            out[:, i : i + 1].copy_(self.decode_step())
        return out

    def synchronize(self) -> None:
        """Wait for every GPU the model occupies."""
        synchronize_devices(self.devices)
