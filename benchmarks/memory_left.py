"""GPU memory a latency measurement leaves allocated after it returns, and what holds it.

    python benchmarks/memory_left.py [--preset llama-3.2-1b] [--out DIR]

A measurement must leave ``torch.cuda.memory_allocated()`` where it found it (its cache, graphs and inputs
released). For each case (one call; a grid; the eager engines) this prints the bytes left, and when any
are left, the CUDA tensors still alive that were not there before (shape, dtype, bytes) with the types of
the objects that refer to them, then whether ``torch._dynamo.reset()`` gives the memory back (torch.compile's
caches holding it). Writes JSON under ``--out``; prints a table last.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CASES = {
    "one call (compiled)": dict(batch=1, prompt_len=128, gen_len=16),
    "grid 2x2 (compiled)": dict(batch=[1, 4], prompt_len=[128, 512], gen_len=16),
    "grid 2x2 (eager prefill)": dict(batch=[1, 4], prompt_len=[128, 512], gen_len=16, prefill="eager"),
    "grid 2x2 (no compile)": dict(batch=[1, 4], prompt_len=[128, 512], gen_len=16, compile=False),
}


def _cuda_tensors() -> dict[int, object]:
    import torch

    found = {}
    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor) and obj.is_cuda:
                found[id(obj)] = obj
        except Exception:  # noqa: BLE001 - objects that fail isinstance/attribute access
            continue
    return found


def _holders(obj, ignore: list, depth: int = 4) -> list[str]:
    """Type names along the first referrer chain of ``obj`` (what keeps it alive), skipping ``ignore``."""
    chain, current = [], obj
    skip = {id(x) for x in ignore}
    for _ in range(depth):
        refs = [r for r in gc.get_referrers(current) if id(r) not in skip and not isinstance(r, type(sys._getframe()))]
        if not refs:
            break
        skip.add(id(refs))
        nxt = refs[0]
        name = type(nxt).__qualname__
        if isinstance(nxt, dict):
            name += str([k for k, v in nxt.items() if v is current][:2])
        chain.append(name)
        current = nxt
    return chain


def run_case(model, name: str, options: dict) -> dict:
    import torch

    from elana_magic.latency import measure_latency

    gc.collect()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    alive = set(_cuda_tensors())
    rep = measure_latency(model, warmup=1, repeats=3, min_time=0, energy=False, progress=False, **options)
    del rep
    gc.collect()
    torch.cuda.synchronize()
    left = torch.cuda.memory_allocated() - before
    row = {"case": name, "left_bytes": left, "tensors": []}
    if left:
        everything = _cuda_tensors()
        new = sorted((t for i, t in everything.items() if i not in alive), key=lambda t: -t.untyped_storage().nbytes())
        for t in new[:12]:
            row["tensors"].append({"shape": list(t.shape), "dtype": str(t.dtype), "bytes": t.untyped_storage().nbytes(),
                                   "held_by": _holders(t, ignore=[everything, new])})
        del everything, new
        torch._dynamo.reset()
        gc.collect()
        row["left_after_dynamo_reset"] = torch.cuda.memory_allocated() - before
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="llama-3.2-1b")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    import torch

    from elana_magic.models import random_model

    model = random_model(args.preset, dtype=torch.bfloat16, device="cuda")
    rows = [run_case(model, name, options) for name, options in CASES.items()]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "memory_left.json"), "w") as f:
        json.dump({"preset": args.preset, "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "rows": rows}, f, indent=1)
    for row in rows:
        print(f"{row['case']:28s} left {row['left_bytes']:>12,d} B", end="")
        if "left_after_dynamo_reset" in row:
            print(f"  after dynamo reset {row['left_after_dynamo_reset']:>12,d} B", end="")
        print()
        for t in row["tensors"]:
            print(f"    {t['shape']} {t['dtype']} {t['bytes']:,d} B  held by {' <- '.join(t['held_by'])}")


if __name__ == "__main__":
    main()
