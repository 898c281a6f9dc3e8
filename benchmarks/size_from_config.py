"""Size from config.json alone: time, peak memory, and the analytic cache against a real prefill.

Side by side, in one run:

1. Real model shapes (configs written to temp folders, no weights): each sized in a fresh
   interpreter, timing the cold start (imports included) and the call itself (torch and
   transformers already imported, as in a notebook), with the process's peak RSS. The KV cache at
   batch 1 / 8, 32k context is set against the naive "every layer is full attention" formula
   (ELANA's reference formula), which is wrong for sliding-window and hybrid models.
2. Accuracy: small random models of each cache family, analytic bytes vs the bytes of the cache a
   real prefill builds, at a context beyond the sliding window.

    .venv/bin/python benchmarks/size_from_config.py        # writes benchmarks/results/size_from_config.{json,md}
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

# Published config.json shapes (weights irrelevant).
SHAPES = {
    "Llama-3.1-8B": ("llama-3.1-8b", {}),
    "Qwen2.5-7B": ("qwen2.5-7b", {}),
    "Mistral-7B-v0.1 (sliding 4096)": (None, dict(
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, sliding_window=4096, max_position_embeddings=32768)),
    "Gemma-2-9B (sliding 4096 / global)": (None, dict(
        model_type="gemma2", vocab_size=256000, hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, sliding_window=4096)),
    "Bamba-9B (hybrid Mamba2 + 3 attention)": (None, dict(
        model_type="bamba", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, attn_layer_indices=[9, 18, 27], mamba_n_heads=128,
        mamba_d_head=64, mamba_d_state=128, mamba_n_groups=1, mamba_d_conv=4, mamba_expand=2)),
    "Mamba2-1.3B": ("mamba2-1.3b", {}),
}
BATCHES, SEQ_LENS = [1, 8], [32768]

CHILD = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import torch, transformers
    from elana_magic.size import measure_size
    t1 = time.perf_counter()
    r = measure_size(sys.argv[1], batch={batches}, seq_len={seq_lens})
    t2 = time.perf_counter()
    # VmHWM: this process's peak RSS (ru_maxrss would carry over the parent's across exec)
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(json.dumps({{"import_s": t1 - t0, "call_s": t2 - t1, "peak_rss_bytes": peak * 1024,
                      "report": r.to_dict()}}))
""").format(batches=BATCHES, seq_lens=SEQ_LENS)


def write_config(folder: str, preset: str | None, fields: dict) -> None:
    import torch  # noqa: F401  (transformers needs it to build configs of these types)
    from transformers import AutoConfig

    from elana_magic.models import preset_config

    if preset:
        config = preset_config(preset, dtype="bfloat16")
    else:
        fields = dict(fields)
        config = AutoConfig.for_model(fields.pop("model_type"), dtype="bfloat16", **fields)
    config.save_pretrained(folder)


def naive_kv(report: dict, config_path: str, batch: int, seq_len: int) -> int | None:
    """ELANA's reference formula: 2 * layers * kv_heads * head_dim * B * L * bytes, all layers full attention."""
    with open(os.path.join(config_path, "config.json")) as f:
        c = json.load(f)
    if "num_attention_heads" not in c or c.get("model_type") == "mamba2":
        return None
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    return 2 * c["num_hidden_layers"] * kv * head_dim * batch * seq_len * 2


def shapes_section() -> list[dict]:
    rows = []
    for name, (preset, fields) in SHAPES.items():
        with tempfile.TemporaryDirectory() as folder:
            write_config(folder, preset, fields)
            out = subprocess.run([sys.executable, "-c", CHILD, folder], capture_output=True, text=True, timeout=300,
                                 cwd=os.path.dirname(HERE))
            if out.returncode != 0:
                rows.append({"model": name, "error": out.stderr.strip().splitlines()[-1]})
                continue
            res = json.loads(out.stdout.strip().splitlines()[-1])
            rep = res.pop("report")
            for row in rep["rows"]:
                rows.append({
                    "model": name, "params": rep["param_count"], "model_bytes": rep["model_bytes"],
                    "batch": row["batch"], "seq_len": row["seq_len"], "kv_cache_bytes": row["kv_cache_bytes"],
                    "ssm_cache_bytes": row["ssm_cache_bytes"], "cache_bytes": row["cache_bytes"],
                    "naive_kv_bytes": naive_kv(rep, folder, row["batch"], row["seq_len"]), **res,
                })
    return rows


def accuracy_section() -> list[dict]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from elana_magic.size import measure_size

    small = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2)
    configs = {
        "llama (GQA, head_dim)": ("llama", dict(small, head_dim=32)),
        "qwen2 (sliding layers)": ("qwen2", dict(small, use_sliding_window=True, sliding_window=8, max_window_layers=2)),
        "gemma2 (sliding/global)": ("gemma2", dict(small, head_dim=16, sliding_window=8)),
        "mistral (sliding)": ("mistral", dict(small, sliding_window=8)),
        "gpt2": ("gpt2", dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4)),
        "mamba2": ("mamba2", dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, state_size=16, expand=2,
                                  head_dim=16, num_heads=8, n_groups=2, conv_kernel=4)),
        "bamba (hybrid)": ("bamba", dict(small, attn_layer_indices=[1], mamba_n_heads=8, mamba_d_head=16,
                                         mamba_d_state=16, mamba_n_groups=1, mamba_expand=2)),
        "falcon_h1 (parallel hybrid)": ("falcon_h1", dict(small, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=16,
                                                         mamba_n_groups=1, mamba_expand=2, mamba_d_ssm=128)),
        "jamba (Mamba1 hybrid)": ("jamba", dict(small, attn_layer_period=2, attn_layer_offset=1, num_experts=2,
                                                expert_layer_period=2, mamba_d_state=8, mamba_expand=2)),
    }
    rows = []
    for name, (mtype, fields) in configs.items():
        torch.manual_seed(0)
        for dtype in (torch.float32, torch.bfloat16):
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(mtype, **fields), dtype=dtype).eval()
            rep = measure_size(model, batch=[1, 3], seq_len=[5, 40])
            for row in rep.rows:
                rows.append({"model": name, "dtype": str(dtype).removeprefix("torch."), "batch": row["batch"],
                             "seq_len": row["seq_len"], "analytic_bytes": row["cache_bytes"],
                             "measured_bytes": row.get("measured_cache_bytes"),
                             "equal": row.get("measured_cache_bytes") == row["cache_bytes"]})
    return rows


def environment() -> dict:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{cpu}, {os.cpu_count()} cores (CPU only; no GPU used)", "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def gb(n) -> str:
    return "-" if n is None else f"{n / 1e9:.3f}"


def markdown(env: dict, shapes: list[dict], accuracy: list[dict]) -> str:
    lines = [f"# Size from config.json ({env['date']})", "",
             f"{env['machine']}; Python {env['python']}, torch {env['torch']}, transformers {env['transformers']}.",
             "", "## Real shapes, sized from config.json alone (meta device, fresh interpreter each)", "",
             "| model | params | model GB | batch | seq_len | KV GB | SSM GB | naive KV GB | call s | cold s | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in shapes:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |")
            continue
        lines.append(f"| {r['model']} | {r['params'] / 1e9:.3f} B | {gb(r['model_bytes'])} | {r['batch']} | "
                     f"{r['seq_len']} | {gb(r['kv_cache_bytes'])} | {gb(r['ssm_cache_bytes'])} | "
                     f"{gb(r['naive_kv_bytes'])} | {r['call_s']:.2f} | {r['import_s'] + r['call_s']:.2f} | "
                     f"{r['peak_rss_bytes'] / 1e6:.0f} |")
    lines += ["", "naive KV = 2 x layers x kv_heads x head_dim x B x L x 2 bytes (every layer full attention): "
              "what a formula that ignores sliding windows and Mamba layers would say.", "",
              "## Analytic cache vs the cache a real prefill builds (small random models)", "",
              "| model | dtype | batch | seq_len | analytic B | measured B | equal |", "|---|---|---:|---:|---:|---:|---|"]
    for r in accuracy:
        lines.append(f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['seq_len']} | {r['analytic_bytes']:,} | "
                     f"{r['measured_bytes']:,} | {'yes' if r['equal'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    env = environment()
    shapes = shapes_section()
    accuracy = accuracy_section()
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "size_from_config.json"), "w") as f:
        json.dump({"environment": env, "shapes": shapes, "accuracy": accuracy}, f, indent=2)
    text = markdown(env, shapes, accuracy)
    with open(os.path.join(RESULTS, "size_from_config.md"), "w") as f:
        f.write(text)
    print(text)
    worst = max((r["call_s"] for r in shapes if "call_s" in r), default=None)
    peak = max((r["peak_rss_bytes"] for r in shapes if "peak_rss_bytes" in r), default=None)
    print(f"slowest call {worst:.2f} s, highest peak RSS {peak / 1e6:.0f} MB; "
          f"analytic == measured in {sum(r['equal'] for r in accuracy)}/{len(accuracy)} cases")


if __name__ == "__main__":
    main()
