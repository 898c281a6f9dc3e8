"""The compiled decode step's logit error against an eager step, on real weights and on random ones.

What ``GenerationSession`` checks before it uses a compiled step: one graph replay vs one eager step from the
same cache state, relative L2 error of the last-position logits (``rel_err``) against ``compile_tolerance``
(``COMPILE_REL_TOL_PER_LAYER`` x layers). Here, on the GPU: the embedded SmolLM2-135M-Instruct (real weights,
``models.default_model()``; 30 layers) in bf16 and fp32, with a text prompt and with random ids, each engine
(regional compile, whole-model compile, uncompiled CUDA graph), beside a random-weight model of the same shape
and the Llama-3.2-1B / Llama-3.1-8B shapes (random bf16 weights). The error of several further decode steps
(graph replays vs an eager re-run of the same tokens) is recorded too, to see whether one step is typical.

    python benchmarks/compile_tolerance.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from elana_magic.latency import GenerationSession
from elana_magic.latency.session import COMPILE_REL_TOL_PER_LAYER
from elana_magic.models import default_model, random_model

try:
    from _common import environment, write_result
except ImportError:  # run as a module
    from benchmarks._common import environment, write_result

TEXT = ("The quick brown fox jumps over the lazy dog. Measuring what a language model costs means timing its "
        "prefill and its decode steps, reading the energy counter of the board and sizing the cache. ")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def later_steps(s: GenerationSession, steps: int) -> list[float]:
    """Relative logit error of graph replays vs eager steps over the same positions and tokens."""
    errs = []
    with torch.inference_mode():
        s.prefill()
        for _ in range(steps):
            token = s._next.clone()
            s.decode_step()
            graph_logits = s._logits.float().clone()
            s._rewind(1)
            eager = s._forward(token, s._cache, None)[:, -1, :].float()
            errs.append(rel(graph_logits, eager))
    return errs


def one(model, label: str, dtype: torch.dtype, ids, batch: int, mode) -> dict:
    row = {"model": label, "dtype": str(dtype).replace("torch.", ""), "batch": batch,
           "prompt": "text" if ids is not None else "random ids", "compile": mode or "none"}
    try:
        with GenerationSession(model, batch=batch, prompt_len=128, gen_len=16, input_ids=ids,
                               compile=mode if mode else False) as s:
            row.update(engine=s.engine, note=s.note, rel_err=s.rel_err, max_abs_diff=s.max_abs_diff,
                       tolerance=s.compile_tol, compile_s=s.compile_s, layers=model.config.num_hidden_layers)
            if s.engine.startswith("cuda-graph"):
                errs = later_steps(s, 8)
                row.update(later_rel_err_max=max(errs), later_rel_err_mean=sum(errs) / len(errs))
    except Exception as exc:  # noqa: BLE001 - recorded, the table shows it
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    row["per_layer"] = None if row.get("rel_err") is None else row["rel_err"] / model.config.num_hidden_layers
    print(json.dumps(row, default=str), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--skip-shapes", action="store_true", help="skip the random 1B/8B shapes")
    args = parser.parse_args()
    torch._dynamo.config.cache_size_limit = 64
    rows = []
    loaded = default_model()  # de-quantizing the GGUF takes a while: once, then a copy per dtype
    real = not loaded.random_weights
    for dtype in (torch.bfloat16, torch.float32):
        model = copy.deepcopy(loaded.model).to(device="cuda", dtype=dtype)
        ids = None
        if loaded.tokenizer is not None:
            text_ids = loaded.tokenizer(TEXT * 8, return_tensors="pt").input_ids[:, :128]
            ids = text_ids if text_ids.shape[1] == 128 else None
        for mode in ("regional", "whole", None):
            rows.append(one(model, loaded.label, dtype, ids, 1, mode))
        if ids is not None:
            rows.append(one(model, loaded.label, dtype, None, 1, "regional"))
        rows.append(one(model, loaded.label, dtype, None, 16, "regional"))
        del model
        torch.cuda.empty_cache()
        rand = random_model("smollm2-135m", dtype=dtype, device="cuda")
        rows.append(one(rand, "smollm2-135m shape, random weights", dtype, None, 1, "regional"))
        del rand
        torch.cuda.empty_cache()
    if not args.skip_shapes:
        for preset in ("llama-3.2-1b", "llama-3.1-8b"):
            model = random_model(preset, dtype=torch.bfloat16, device="cuda")
            rows.append(one(model, f"{preset} shape, random weights", torch.bfloat16, None, 1, "regional"))
            del model
            torch.cuda.empty_cache()
    env = environment("cuda:0") | {"real_weights": real, "tolerance_per_layer": COMPILE_REL_TOL_PER_LAYER}
    lines = [f"# Compiled decode step vs eager step: relative L2 logit error, {env['card']}", "",
             f"{env['date']}, driver {env.get('driver')}, torch {env['torch']}, transformers {env['transformers']}. "
             f"Prompt 128 tokens, check at the first decode step; `later steps` = 8 further steps (graph vs eager). "
             f"Tolerance = {COMPILE_REL_TOL_PER_LAYER:g} x layers.", "",
             "| model | dtype | batch | prompt | compile | engine | rel err | per layer | later steps max | tolerance |",
             "|---|---|---:|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['prompt']} | {r['compile']} | error: {r['error']} |")
            continue
        g = lambda k: "-" if r.get(k) is None else format(r[k], ".2e")  # noqa: E731
        lines.append(f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['prompt']} | {r['compile']} | {r['engine']} | "
                     f"{g('rel_err')} | {g('per_layer')} | {g('later_rel_err_max')} | {r['tolerance']:.3f} |")
    text = "\n".join(lines) + "\n"
    write_result(args.out, "latency_compile_tolerance", {"environment": env, "rows": rows}, text)
    print(text)


if __name__ == "__main__":
    main()
