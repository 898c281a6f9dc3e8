"""Reading GPU traces: kernel tables, kinds, busy/idle, launch gaps, per-step times, CUDA-graph visibility.

The traces are small hand-made Kineto-format traces with known answers (the GPU machine checks real ones).
"""

from __future__ import annotations

import json

import pytest

from elana_magic.profile import ParsedTrace, analyze_trace
from elana_magic.profile.capture import safe_label
from elana_magic.profile.trace import (annotation_spans, busy_idle, classify, decode_step_time, graph_visibility_note,
                                       hta_available, kernel_table, launch_gaps, merged_intervals)

CPU = {"pid": 100, "tid": 100}


def _kernel(name, ts, dur, corr=None, stream=7, cat="kernel"):
    args = {"device": 0, "stream": stream}
    if corr is not None:
        args["correlation"] = corr
    return {"ph": "X", "cat": cat, "name": name, "pid": 0, "tid": stream, "ts": ts, "dur": dur, "args": args}


def _launch(ts, corr, name="cudaLaunchKernel"):
    return {"ph": "X", "cat": "cuda_runtime", "name": name, **CPU, "ts": ts, "dur": 2, "args": {"correlation": corr}}


def _ann(name, ts, dur):
    return {"ph": "X", "cat": "user_annotation", "name": name, **CPU, "ts": ts, "dur": dur, "args": {}}


def eager_decode_trace() -> list[dict]:
    """Two decode steps; each launches a gemm (10 µs) and an elementwise kernel (2 µs), 5 µs after its launch."""
    ev = [{"ph": "M", "name": "process_name", "pid": 0, "tid": 0, "args": {"name": "GPU 0"}}]
    for step, base in enumerate((1000.0, 1100.0)):
        ev.append(_ann(f"elana:decode_step[{step}]", base, 40))
        ev += [_launch(base + 1, 10 * step + 1), _launch(base + 10, 10 * step + 2)]
        ev += [_kernel("ampere_bf16_s16816gemm_bf16_128x64", base + 6, 10, 10 * step + 1),
               _kernel("void at::native::vectorized_elementwise_kernel<4, mul>", base + 16, 2, 10 * step + 2)]
    ev.append(_kernel("Memcpy DtoH (Device -> Pinned)", 1200.0, 3, None, stream=20, cat="gpu_memcpy"))
    return ev


def test_kernel_table_counts_totals_and_shares():
    t = ParsedTrace.from_events(eager_decode_trace())
    rows = {r["name"]: r for r in kernel_table(t, top=None)}
    gemm = rows["ampere_bf16_s16816gemm_bf16_128x64"]
    assert (gemm["count"], gemm["total_us"], gemm["mean_us"], gemm["kind"]) == (2, 20.0, 10.0, "matmul")
    assert gemm["share"] == pytest.approx(20 / 27)
    assert rows["Memcpy DtoH (Device -> Pinned)"]["kind"] == "memcpy/memset"
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)


def test_busy_idle_and_gaps():
    t = ParsedTrace.from_events(eager_decode_trace())
    b = busy_idle(t)
    # kernels: [1006,1016) [1016,1018) [1106,1116) [1116,1118) [1200,1203): window 197, busy 27
    assert b["window_us"] == pytest.approx(197) and b["busy_us"] == pytest.approx(27)
    assert b["busy_share"] + b["idle_share"] == pytest.approx(1)
    g = launch_gaps(t)
    assert g["gaps"]["n"] == 2 and g["gaps"]["total_us"] == pytest.approx(88 + 82)
    assert g["launch_delay"]["n"] == 4
    assert g["launch_delay"]["median_us"] == pytest.approx(5.5)  # 5 and 6 µs after the launch call


def test_steps_from_correlated_kernels():
    t = ParsedTrace.from_events(eager_decode_trace())
    spans = annotation_spans(t)
    assert [s["kernels"] for s in spans] == [2, 2]
    assert spans[0]["gpu_start_us"] == 1006 and spans[0]["gpu_end_us"] == 1018
    assert spans[0]["gpu_busy_us"] == 12
    st = decode_step_time(spans)
    assert st["steps"] == 2
    assert st["gpu_mean_us"] == pytest.approx((1118 - 1006) / 2)
    assert st["gpu_median_period_us"] == pytest.approx(100)
    assert st["gpu_median_span_us"] == pytest.approx(12)


def test_graph_replay_kernels_link_to_one_launch():
    ev = [_ann("elana:decode_step[0]", 0, 10), _launch(1, 7, "cudaGraphLaunch")]
    ev += [_kernel(f"k{i}", 50 + 3 * i, 2, 7) | {"args": {"correlation": 7, "graph id": 1}} for i in range(4)]
    t = ParsedTrace.from_events(ev)
    (span,) = annotation_spans(t)
    assert span["kernels"] == 4 and span["gpu_span_us"] == 11
    assert "shows the 4 GPU kernels and copies inside 1 graph replays" in graph_visibility_note(t)
    assert launch_gaps(t)["launch_delay"]["n"] == 0  # graph kernels have no per-kernel launch


def test_graph_launches_without_kernels_are_said_plainly():
    ev = [_launch(1, 7, "cudaGraphLaunch"), _kernel("other", 5, 1, 8)]
    assert "only the graph launches" in graph_visibility_note(ParsedTrace.from_events(ev))


@pytest.mark.parametrize("name, cat, kind", [
    ("nvjet_tst_64x8_64x16_4x1_v_bz_splitK_TNT", "kernel", "matmul"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32", "kernel", "matmul"),
    ("gemv2T_kernel_val<int, int, __nv_bfloat16>", "kernel", "matmul"),
    ("void pytorch_flash::flash_fwd_splitkv_kernel<...>", "kernel", "attention"),
    ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80", "kernel", "attention"),
    ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4>", "kernel", "attention"),
    ("void at::native::reduce_kernel<512, 1, MeanOps>", "kernel", "norm/elementwise"),
    ("triton_poi_fused_add_mul_0", "kernel", "norm/elementwise"),
    ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "kernel", "communication"),
    ("Memset (Device)", "gpu_memset", "memcpy/memset"),
    ("aten::mm", "cpu_op", "matmul"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "cpu_op", "attention"),
    ("aten::mul", "cpu_op", "norm/elementwise"),
    ("aten::copy_", "cpu_op", "memcpy/memset"),
    ("aten::view", "cpu_op", "other"),
])
def test_classify(name, cat, kind):
    assert classify(name, cat) == kind


def test_merged_intervals():
    s, e = merged_intervals([5, 0, 1, 10], [6, 2, 3, 11])
    assert list(s) == [0, 5, 10] and list(e) == [3, 6, 11]


@pytest.mark.parametrize("label, safe", [("llama decode", "llama_decode"), ("a:b*c", "a_b_c"), ("v1.2", "v1.2")])
def test_safe_label(label, safe):
    assert safe_label(label) == safe


@pytest.mark.parametrize("label", ["a/b", "..", "../x", "a\\b", " "])
def test_unsafe_label_refused(label):
    with pytest.raises(ValueError):
        safe_label(label)


def test_analyze_any_trace_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": eager_decode_trace()}))
    rep = analyze_trace(str(path), hta=False)
    d = rep.to_dict()
    assert d["breakdown_basis"] == "GPU kernel time"
    kinds = {r["kind"]: r["time_us"] for r in d["breakdown"]}
    assert kinds == {"matmul": 20, "attention": 0, "norm/elementwise": 4, "memcpy/memset": 3,
                     "communication": 0, "other": 0}
    assert d["busy_idle"]["busy_us"] == 27 and d["step_time"]["steps"] == 2
    text = rep.to_text()
    assert "GPU busy 13.7%" in text and "Top GPU kernels" in text and "launch delay" in text
    assert len(rep.to_dataframe()) == 3


@pytest.mark.skipif(not hta_available(), reason="HolisticTraceAnalysis is not installed (optional extra)")
def test_hta_tables_when_installed(tmp_path, synthetic_trace):
    path = tmp_path / "rank0.json"
    trace = synthetic_trace(2000)
    trace["distributedInfo"] = {"rank": 0}
    path.write_text(json.dumps(trace))
    rep = analyze_trace(str(path), hta=True)
    assert rep.hta is not None, rep.notes
    assert rep.hta["kernel_type_breakdown"] and rep.hta["idle_time"]
    assert "HTA kernel type breakdown" in rep.to_text()
