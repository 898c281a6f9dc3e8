"""elana_magic.size: weights by storage bytes, the analytic cache against the real one, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from elana_magic.models import preset_config, random_model
from elana_magic.size import SizeError, SizeReport, cache_layout, measure_size

SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2)
WINDOW = 8


def config(model_type: str, **kwargs):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **kwargs)


# Small configs of each cache family; every one has a sliding window or a state smaller than the grid.
CONFIGS = {
    "llama-gqa-head_dim": lambda: config("llama", **SMALL, head_dim=32),
    "qwen2-sliding": lambda: config("qwen2", **SMALL, use_sliding_window=True, sliding_window=WINDOW,
                                    max_window_layers=2),
    "gemma2-sliding": lambda: config("gemma2", **SMALL, head_dim=16, sliding_window=WINDOW),
    "mistral-sliding": lambda: config("mistral", **SMALL, sliding_window=WINDOW),
    "gpt2": lambda: config("gpt2", vocab_size=128, n_embd=64, n_layer=2, n_head=4),
    "mamba2": lambda: config("mamba2", vocab_size=128, hidden_size=64, num_hidden_layers=2, state_size=16,
                             expand=2, head_dim=16, num_heads=8, n_groups=2, conv_kernel=4),
    "bamba-hybrid": lambda: config("bamba", **SMALL, attn_layer_indices=[1], mamba_n_heads=8, mamba_d_head=16,
                                   mamba_d_state=16, mamba_n_groups=1, mamba_expand=2),
    "falcon_h1-hybrid": lambda: config("falcon_h1", **SMALL, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=16,
                                       mamba_n_groups=1, mamba_expand=2, mamba_d_ssm=128),
    "jamba-mamba1-hybrid": lambda: config("jamba", **SMALL, attn_layer_period=2, attn_layer_offset=1,
                                          num_experts=2, expert_layer_period=2, mamba_d_state=8, mamba_expand=2),
    "deepseek_v3-mla": lambda: config("deepseek_v3", **{**SMALL, "num_key_value_heads": 4}, kv_lora_rank=16,
                                      q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
                                      n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1,
                                      moe_intermediate_size=32, n_group=1, topk_group=1),
}


def build(cfg, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_analytic_cache_equals_a_real_prefill(name):
    model = build(CONFIGS[name]())
    # seq_len 3 < window < 12: sliding layers are checked below and beyond their window
    report = measure_size(model, batch=[1, 3], seq_len=[3, 12])
    for row in report.rows:
        assert row["measured_cache_bytes"] == row["cache_bytes"], (name, row, report.notes)
        assert row["cache_bytes"] > 0
    assert not [n for n in report.notes if "!=" in n]


def test_formulas_by_hand():
    """The analytic figures are the textbook formulas, not just self-consistent."""
    b, seq = 3, 12
    llama = measure_size(build(CONFIGS["llama-gqa-head_dim"]()), batch=b, seq_len=seq, cross_check=False)
    assert llama.rows[0]["kv_cache_bytes"] == 2 * 4 * 2 * 32 * b * seq * 4  # K+V, layers, kv heads, head_dim
    gemma = measure_size(build(CONFIGS["gemma2-sliding"]()), batch=b, seq_len=seq, cross_check=False)
    # 2 global layers hold all 12 positions, 2 sliding layers hold the last WINDOW positions
    assert gemma.rows[0]["kv_cache_bytes"] == 2 * 2 * 16 * b * (2 * seq + 2 * WINDOW) * 4
    mamba = measure_size(build(CONFIGS["mamba2"]()), batch=b, seq_len=seq, cross_check=False)
    conv = (2 * 64 + 2 * 2 * 16) * 4 * 4  # (intermediate + 2 groups * state) * kernel, fp32 model
    ssm = 8 * 16 * 16 * 4  # heads * head_dim * state, float32
    assert mamba.rows[0]["ssm_cache_bytes"] == 2 * b * (conv + ssm)
    assert mamba.rows[0]["kv_cache_bytes"] == 0
    gpt2 = measure_size(build(CONFIGS["gpt2"]()), batch=b, seq_len=seq, cross_check=False)
    assert gpt2.rows[0]["kv_cache_bytes"] == 2 * 2 * 4 * 16 * b * seq * 4


def test_bf16_hybrid_cache_dtypes_match_the_real_cache():
    model = build(CONFIGS["bamba-hybrid"](), dtype=torch.bfloat16)
    report = measure_size(model, batch=2, seq_len=[5, 20])
    assert report.cache_dtype == "bfloat16" and report.ssm_state_dtype == "float32"
    assert all(r["measured_cache_bytes"] == r["cache_bytes"] for r in report.rows)
    assert report.rows[0]["ssm_cache_bytes"] == report.rows[1]["ssm_cache_bytes"]  # independent of seq_len


def test_cache_dtype_override_and_layout_counts():
    cfg = CONFIGS["gemma2-sliding"]()
    assert cache_layout(cfg).counts() == {"sliding_attention": 2, "full_attention": 2}
    fp32 = measure_size(build(cfg), seq_len=64, cross_check=False)
    fp8 = measure_size(build(cfg), seq_len=64, cache_dtype="fp8")
    assert fp8.cache_dtype == "float8_e4m3fn"
    assert fp8.rows[0]["kv_cache_bytes"] * 4 == fp32.rows[0]["kv_cache_bytes"]
    assert "measured_cache_bytes" not in fp8.rows[0]
    assert any("cache dtype" in n for n in fp8.notes)


def test_unknown_architecture_is_measured_with_a_note():
    cfg = config("qwen3_next", **SMALL, head_dim=16, num_experts=2, num_experts_per_tok=1, moe_intermediate_size=32,
                 linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16)
    report = measure_size(build(cfg), batch=1, seq_len=[4, 8])
    assert report.params_bytes > 0
    assert all(r["cache_source"] == "measured" and r["cache_bytes"] > 0 for r in report.rows)
    assert any("doesn't know" in n for n in report.notes)


def test_plain_module_without_config():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8))
    report = measure_size(model, seq_len=16)
    assert report.params_bytes == (64 + 8 + 8 + 8) * 4
    assert report.buffers_bytes == 8 * 4 * 2 + 8  # running mean/var + num_batches_tracked (int64)
    assert report.rows[0]["cache_bytes"] is None
    assert any("no transformers config" in n for n in report.notes)


# --- weights by storage -------------------------------------------------------------------------


class Packed4Linear(torch.nn.Module):
    """4-bit weights packed two per uint8 byte, fp16 group scales: a GPTQ/bnb-like layer."""

    def __init__(self, linear: torch.nn.Linear, group: int = 32):
        super().__init__()
        out, inp = linear.weight.shape
        self.register_buffer("qweight", torch.randint(0, 255, (out, inp // 2), dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out, inp // group, dtype=torch.float16))
        self.shape, self.group = (out, inp), group

    def forward(self, x):
        low, high = (self.qweight & 0xF).to(x.dtype), (self.qweight >> 4).to(x.dtype)
        w = torch.stack([low, high], -1).reshape(self.shape) - 8
        return x @ (w * self.scales.to(x.dtype).repeat_interleave(self.group, 1)).t()


class Int8Linear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randint(-127, 127, linear.weight.shape, dtype=torch.int8),
                                         requires_grad=False)
        self.register_buffer("scale", torch.ones(linear.weight.shape[0], dtype=torch.float32))

    def forward(self, x):
        return x @ (self.weight.to(x.dtype) * self.scale[:, None]).t()


def _swap_attention(model, layer_cls):
    for layer in model.model.layers:
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(layer.self_attn, name, layer_cls(getattr(layer.self_attn, name)))
    return model


def test_packed_4bit_counted_by_storage(tiny_llama):
    full = measure_size(tiny_llama, seq_len=16)
    packed = measure_size(_swap_attention(random_model("tiny-llama"), Packed4Linear), seq_len=16)
    # tiny-llama attention: per layer q,o 64x64 and k,v 32x64 -> 12288 weights = 6144 packed bytes
    attn = 2 * (2 * 64 * 64 + 2 * 32 * 64)
    assert packed.weights.dtypes["uint8"]["buffers_bytes"] == attn // 2
    assert packed.weights.dtypes["float16"]["buffers_bytes"] == attn // 32 * 2
    assert packed.model_bytes == full.model_bytes - attn * 4 + attn // 2 + attn // 32 * 2
    assert packed.rows[0]["measured_cache_bytes"] == packed.rows[0]["cache_bytes"]  # it still runs


def test_int8_counted_by_storage():
    model = _swap_attention(random_model("tiny-llama"), Int8Linear)
    report = measure_size(model, seq_len=16)
    attn = 2 * (2 * 64 * 64 + 2 * 32 * 64)
    assert report.weights.dtypes["int8"]["params_bytes"] == attn
    assert report.to_dict()["frozen_param_count"] == attn
    assert report.model_dtype == "float32"  # int8 weights don't make an int8 cache


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.ao quantization is deprecated upstream
def test_torch_quantized_and_fp8_weights():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(random_model("tiny-llama"), {torch.nn.Linear}, dtype=torch.qint8)
    report = measure_size(q, seq_len=16)
    assert report.weights.dtypes["qint8"]["params_bytes"] == 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 128) + 512 * 64
    assert report.weights.tied == 0
    fp8 = random_model("tiny-llama").to(torch.float8_e4m3fn)
    assert measure_size(fp8, seq_len=16, cross_check=False).params_bytes * 4 == measure_size(
        random_model("tiny-llama"), seq_len=16, cross_check=False).params_bytes


def test_tied_weights_counted_once():
    model = random_model(preset_config("tiny-llama", tie_word_embeddings=True))
    report = measure_size(model, seq_len=16, cross_check=False)
    assert report.weights.tied == 1
    assert report.params_bytes == sum(p.numel() * 4 for p in model.parameters())  # parameters() dedupes ties
    assert report.to_dict()["param_count"] == sum(p.numel() for p in model.parameters())


# --- the cross-check leaves the model as it was ------------------------------------------------------


def test_cross_check_restores_model_state():
    model = random_model("tiny-llama")
    model.train()
    model.model.layers[0].eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    report = measure_size(model, batch=2, seq_len=[8, 16])
    assert all("measured_cache_bytes" in r for r in report.rows)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


def test_ctrl_c_during_cross_check_restores_model_state():
    model = random_model("tiny-llama")
    model.train()

    def interrupt(*_):
        raise KeyboardInterrupt

    handle = model.model.layers[1].register_forward_pre_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            measure_size(model, seq_len=8)
    finally:
        handle.remove()
    assert all(m.training for m in model.modules())


def test_failed_cross_check_keeps_analytic_with_a_note():
    model = random_model("tiny-llama")

    def boom(*_):
        raise RuntimeError("CUDA out of memory (simulated)\nsecond line")

    model.model.layers[0].register_forward_pre_hook(boom)
    report = measure_size(model, seq_len=8)
    assert report.rows[0]["cache_bytes"] == 2 * 2 * 2 * 16 * 8 * 4
    assert "measured_cache_bytes" not in report.rows[0]
    assert any("cross-check failed" in n and "out of memory" in n and "\n" not in n for n in report.notes)


# --- GPU fit (the GPU itself is faked: the path is what's tested) ------------------------------------


def test_fits_gpu_per_row(monkeypatch, tiny_llama):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Fake H100")
    free = 2_000_000
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=None: (free, 80_000_000_000))
    report = measure_size(tiny_llama, batch=[1, 64], seq_len=[64], cross_check=False)
    small, big = report.rows
    assert small["total_bytes"] <= free and small["fits_gpu"] is True
    assert big["total_bytes"] > free and big["fits_gpu"] is False
    assert report.to_dict()["gpu"] == {"index": 0, "name": "Fake H100", "free_bytes": free, "total_bytes": 80_000_000_000}
    assert "fits GPU" in report.to_text() and "NO" in report.to_text()


def test_no_gpu_no_fit_column(tiny_llama):
    if torch.cuda.is_available():
        pytest.skip("a real GPU is visible")
    report = measure_size(tiny_llama, seq_len=16, cross_check=False)
    assert "fits_gpu" not in report.rows[0] and report.gpu is None


# --- folders, configs, hub ids (meta device) --------------------------------------------------------


def test_config_and_preset_are_sized_on_meta():
    cfg = preset_config("llama-3.2-1b", dtype="bfloat16")
    report = measure_size(cfg, batch=[1, 8], seq_len=[1024, 8192])
    assert report.to_dict()["param_count"] == 1_235_814_400  # Llama-3.2-1B, tied embeddings
    assert report.params_bytes == 2 * 1_235_814_400
    assert report.rows[0]["kv_cache_bytes"] == 2 * 16 * 8 * 64 * 1024 * 2
    assert "meta" in report.source
    preset = measure_size("random:mamba2-1.3b", seq_len=[1024, 4096])
    assert preset.rows[0]["ssm_cache_bytes"] == preset.rows[1]["ssm_cache_bytes"] > 0


def test_8b_folder_fast_and_small(tmp_path):
    """Sized from config.json alone: under 10 s and a process peak RSS under 1 GB (a fresh interpreter).

    torch and transformers are imported first, as in the notebook where the magic runs (a cold
    import is timed in benchmarks/size_from_config.py).
    """
    preset_config("llama-3.1-8b", dtype="bfloat16").save_pretrained(tmp_path)
    code = textwrap.dedent(f"""
        import json, time
        import torch, transformers
        from elana_magic.size import measure_size
        t = time.perf_counter()
        r = measure_size({str(tmp_path)!r}, batch=[1, 8, 128], seq_len=[1024, 2048, 8192])
        # VmHWM: this process's peak RSS (ru_maxrss would carry over the parent's across exec)
        peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
        print(json.dumps({{"s": time.perf_counter() - t, "peak_kib": peak,
                          "params": r.to_dict()["param_count"], "kv": r.rows[0]["kv_cache_bytes"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["params"] == 8_030_261_248
    assert result["kv"] == 2 * 32 * 8 * 128 * 1024 * 2  # 128 KiB per token in bf16
    assert result["s"] < 10
    assert result["peak_kib"] * 1024 < 1e9  # the whole process, imports included


def test_missing_folder_no_config_unknown_type(tmp_path):
    with pytest.raises(SizeError, match="no folder"):
        measure_size(str(tmp_path / "missing"))
    with pytest.raises(SizeError, match="has no config.json"):
        measure_size(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-arch"}))
    with pytest.raises(SizeError, match="transformers can't read the config"):
        measure_size(str(tmp_path))


def test_hub_id_offline_and_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SizeError, match="Hub is offline"):
        measure_size("no-such-org/no-such-model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("elana_magic.loading.reachable", lambda url, timeout=3.0: False)
    with pytest.raises(SizeError, match="can't reach .*no network"):
        measure_size("no-such-org/no-such-model")


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch=0), "batch must be positive"),
    (dict(seq_len=[16, -1]), "seq_len must be positive"),
    (dict(seq_len=[]), "seq_len needs at least one value"),
    (dict(batch=1.5), "batch must be positive integers"),
    (dict(cache_dtype="float7"), "unknown dtype"),
])
def test_bad_arguments(tiny_llama, kwargs, message):
    with pytest.raises(SizeError, match=message):
        measure_size(tiny_llama, **kwargs)


def test_bad_target():
    with pytest.raises(SizeError, match="can't size a dict"):
        measure_size({"a": 1})


# --- the report ---------------------------------------------------------------------------------


def test_report_contract_and_views(tiny_llama):
    report = measure_size(tiny_llama, batch=[1, 2], seq_len=[16, 32], binary=True)
    assert isinstance(report, SizeReport)
    data = json.loads(report.to_json())
    for key in ("params_bytes", "buffers_bytes", "model_bytes", "rows", "dtypes", "param_count", "notes", "units"):
        assert key in data
    assert data["model_bytes"] == data["params_bytes"] + data["buffers_bytes"]
    assert len(data["rows"]) == 4
    for row in data["rows"]:
        for key in ("batch", "seq_len", "kv_cache_bytes", "ssm_cache_bytes", "cache_bytes", "total_bytes"):
            assert key in row
        assert row["cache_bytes"] == row["kv_cache_bytes"] + row["ssm_cache_bytes"]
    frame = report.to_dataframe()
    assert list(frame["batch"]) == [1, 1, 2, 2] and "model_bytes" in frame.columns
    text = report.to_text()
    assert "KiB" in text and "kB" not in text
    assert "<table" in report.to_html()


def test_widget_and_figure(tiny_llama):
    import ipywidgets

    report = measure_size(tiny_llama, batch=[1, 4], seq_len=[16], cross_check=False)
    view = report.widget()
    assert isinstance(view, ipywidgets.VBox)
    assert "<table" in view.children[0].value
    assert view.children[1].value[:4] == b"\x89PNG"


def test_sizes_do_not_depend_on_environment_units(tiny_llama, monkeypatch):
    """No hidden switches: the units are an argument, whatever the environment says."""
    si = measure_size(tiny_llama, seq_len=16, cross_check=False)
    for name in ("ELANA_UNITS", "ELANA_BINARY", "UNITS"):
        monkeypatch.setenv(name, "binary")
    again = measure_size(tiny_llama, seq_len=16, cross_check=False)
    assert again.to_dict()["units"] == si.to_dict()["units"] == "SI (GB = 1e9 bytes)"
    assert again.to_text() == si.to_text() and "kB" in si.to_text() and "KiB" not in si.to_text()
    binary = measure_size(tiny_llama, seq_len=16, cross_check=False, binary=True)
    assert "KiB" in binary.to_text()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile imports deprecated torch.jit parts
def test_compiled_model_is_sized_as_the_original(tiny_llama):
    compiled = torch.compile(tiny_llama)
    report = measure_size(compiled, seq_len=16, cross_check=False)
    assert report.params_bytes == measure_size(tiny_llama, seq_len=16, cross_check=False).params_bytes
    assert report.model.startswith("LlamaForCausalLM")


def test_folder_with_safetensors_reports_checkpoint_bytes(tmp_path):
    """A quantized checkpoint's real bytes come from the safetensors headers, not from the config."""
    from safetensors.torch import save_file

    preset_config("tiny-llama").save_pretrained(tmp_path)
    save_file({"a": torch.zeros(4, 8, dtype=torch.uint8), "b": torch.zeros(8, dtype=torch.bfloat16)},
              str(tmp_path / "model.safetensors"))
    report = measure_size(str(tmp_path), seq_len=16)
    assert report.to_dict()["checkpoint"] == {"files": 1, "bytes": 32 + 16, "dtypes": {"U8": 32, "BF16": 16}}
    assert "checkpoint on disk: 48 B in 1 safetensors file(s)" in report.to_text()


def _layer_types_of_transformers_5_17(cfg):
    """transformers <= 5.17's get_layer_types_and_kwargs: one kwargs dict for all layers (often empty)."""
    types = getattr(cfg, "layer_types", None) or (
        ["sliding_attention"] * cfg.num_hidden_layers if getattr(cfg, "sliding_window", None)
        else ["full_attention"] * cfg.num_hidden_layers)
    kwargs = {"sliding_window": cfg.sliding_window} if "sliding_attention" in types else {}
    return types, kwargs


@pytest.mark.parametrize("name", ["llama-gqa-head_dim", "gemma2-sliding"])
def test_layout_under_older_transformers_kwargs(monkeypatch, name):
    """On transformers 5.17 (the GPU machine's) the kwargs came as one dict: a Llama had no cached layers."""
    import transformers.cache_utils

    cfg = CONFIGS[name]()
    today = cache_layout(cfg)
    monkeypatch.setattr(transformers.cache_utils, "get_layer_types_and_kwargs", _layer_types_of_transformers_5_17)
    older = cache_layout(cfg)
    assert len(older.layers) == cfg.num_hidden_layers
    assert older.layer_bytes(2, 64, 2, 4) == today.layer_bytes(2, 64, 2, 4)
    assert all(kv > 0 for kv, _ in older.layer_bytes(2, 64, 2, 4))
