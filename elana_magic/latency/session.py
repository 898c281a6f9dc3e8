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
  AOTAutograd caches (a new process of the same shape skips code generation). Fused bf16 kernels round differently from eager ones, so
  the check is on the
  relative logit error and on the greedy token (up to a near-tie of eager's top logits); on a failure the
  session falls back to the uncompiled graph, with a note.
* ``"eager"`` (CPU, ``cuda_graph=False``): a ``DynamicCache`` grown one token per step.

Prefill engine (``prefill="auto"``, the default): where decode runs a CUDA graph, the prefill of the fixed
batch and prompt shape is captured too, in the same static cache, compiled like the decode step when that
one is; it is checked once against an eager prefill (logits and greedy token, ``compile_policy.compare_logits``)
and on a failure the prefill stays eager, with a note. ``prefill="eager"``: plain transformers' prefill.
``engines`` names both: ``{"prefill": ..., "decode": ...}``.

On exit the model's training flags, ``requires_grad``, generation config and cache attributes are
put back, and the memory the session allocated (cache, graph pool) is released.
"""


import contextlib
import time
from typing import Any, Callable

import torch

from ..core import defaults
from .compile_policy import (COMPILE_MODES, COMPILE_REL_TOL_PER_LAYER, COMPILE_VARIANTS, _COMPILED,  # noqa: F401
                             CompileWatch, _compile_counters, _compiled_layer, _compiled_logits, _layer_forward,
                             _model_logits, _recompile_room, compare_logits, compile_mode, compile_tolerance,
                             regional_compiled, repeated_blocks, step_key, top1_gap_tolerance)
from .devices import _side_stream, cuda_indices, graph_capture, model_devices
from .devices import synchronize as synchronize_devices
from .errors import GenerationInputError, GenerationOutOfMemory  # noqa: F401 - their home before errors.py
from .inputs import (ModelState, _accepts, _cache_kwarg, check_can_generate, check_cpu_memory, check_lengths,  # noqa: F401
                     is_out_of_memory, max_positions, model_device, model_dtype, out_of_memory_message, random_prompt,
                     vocab_size)
from .prefill import capture_prefill, setup_prefill
from .settings import check_request

def graphs_supported(device: torch.device) -> bool:
    """CUDA graphs (and so the compiled engines) need a CUDA device."""
    return device.type == "cuda"


class GenerationSession:
    """Prefill, decode steps and whole requests on ``model``, greedy, exactly ``gen_len`` tokens.

    ``cuda_graph``: None = graph on CUDA, eager elsewhere; True = try the graph (fall back with a note);
    False = eager. ``input_ids``: a ``(batch, prompt_len)`` or ``(prompt_len,)`` tensor to use instead of
    random ids (its length then sets ``prompt_len``). ``compile``: capture an Inductor-compiled decode
    step in the graph: True or "regional" (one compiled decoder block shared by all layers), "whole" (the whole
    forward); falls back to the uncompiled graph with a note. ``prefill``: "auto" = the prefill captured (and
    compiled like decode) where decode runs a graph, checked against eager; "eager" = plain transformers' prefill.
    ``checked``: the lengths were already checked (``LatencySettings``).
    """

    def __init__(self, model: torch.nn.Module, batch: int = defaults.BATCH, prompt_len: int = defaults.PROMPT_LEN,
                 gen_len: int = defaults.GEN_LEN,
                 cuda_graph: bool | None = None, input_ids: torch.Tensor | None = None, seed: int = 0,
                 check: bool = True, compile: bool | str = False, prefill: str = defaults.PREFILL,
                 checked: bool = False):
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
        if not checked:
            check_request(batch, prompt_len, gen_len)
        check_lengths(model, batch, prompt_len, gen_len)
        if all(d.type == "cpu" for d in model_devices(model)):
            check_cpu_memory(model, batch, prompt_len, gen_len)
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
        self.prefill_choice = prefill
        self.prefill_engine = "eager"
        self.prefill_check: dict[str, float] | None = None   # the captured prefill vs eager: max_abs_diff, rel_err
        self.prefill_note: str | None = None
        self._prefill_graph = None
        self._prefill_run: Callable[[], torch.Tensor] | None = None
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
            self._setup_prefill()
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
        self._prefill_run = self._prefill_graph = None
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
                key = step_key(self.model, self.compile_mode, self._blocks, self.batch, self.prompt_len,
                               self.prompt_len + self.gen_len, str(self.dtype), str(self.device))
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
            except Exception as exc:  # noqa: BLE001 - compile, capture or check failed: the uncompiled graph, visibly
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
            except Exception as exc:  # noqa: BLE001 - capture or check failed: eager, visibly
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
            # the room holds through the capture too: a compile there past torch's own limit would put the compiled
            # function in run-only mode for the rest of the process (no later shape compiles)
            room = _recompile_room(COMPILE_VARIANTS + 2 * len(self._blocks or ())) if compiled else contextlib.nullcontext()
            with room:
                with torch.cuda.stream(stream):
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
                with graph_capture(graph, self.device):
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
        self.max_abs_diff, self.rel_err = compare_logits(graph_logits, eager_logits, self.dtype, self.compile_tol,
                                                         compiled, "step" if compiled else "graph")

    def _static_layers(self):
        return [layer for layer in getattr(self._cache, "layers", []) if torch.is_tensor(getattr(layer, "cumulative_length", None))]

    def _rewind(self, n: int) -> None:
        for layer in self._static_layers():
            layer.cumulative_length.sub_(n)

    def _reset_static(self) -> None:
        # Slots past the current length are masked out, so rewinding the length is a fresh cache. The
        # cache's tensors were made in inference mode, which an in-place update needs too.
        with torch.inference_mode():
            for layer in self._static_layers():
                layer.cumulative_length.zero_()
        self.position = 0
        self.steps_done = 0

    def _prefill_static(self) -> torch.Tensor:
        self._reset_static()
        logits = self._forward(self.input_ids, self._cache, None)[:, -1, :]
        self._next.copy_(logits.argmax(-1, keepdim=True))
        return logits

    def _eager_prefill(self) -> torch.Tensor:
        """transformers' own prefill on a fresh cache (static with a decode graph, else dynamic): last logits."""
        if self._graph is not None:
            return self._prefill_static()
        self._cache = self._new_dynamic_cache()
        logits = self._forward(self.input_ids, self._cache, self._mask[:, : self.prompt_len])[:, -1, :]
        self._next = logits.argmax(-1, keepdim=True)
        return logits

    # -- prefill engine (latency/prefill.py) ------------------------------------------------------
    def _setup_prefill(self) -> None:
        setup_prefill(self)

    def _capture_prefill(self, compiled: bool) -> Callable[[], torch.Tensor]:
        return capture_prefill(self, compiled)

    @property
    def engines(self) -> dict[str, str]:
        """The engine each phase ran on: ``{"prefill": ..., "decode": ...}``."""
        return {"prefill": self.prefill_engine, "decode": self.engine}

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
            if self._prefill_run is not None:
                self._prefill_run()
            else:
                self._eager_prefill()
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
