"""measure_latency on CPU: all phases, statistics per contract, energy per phase (sensor double), state kept."""

import json

import pytest

from elana_magic.energy import EnergyMeter
from elana_magic.latency import LatencyReport, measure_latency
from elana_magic.latency.session import GenerationInputError
from elana_magic.core.units import format_energy

FAST = dict(warmup=0, repeats=2, min_time=0.0, progress=False)
STAT_KEYS = {"n", "mean", "median", "std", "p90", "p99"}


def test_all_phases_report_contract(tiny_llama):
    rep = measure_latency(tiny_llama, batch=2, prompt_len=8, gen_len=5, energy=False, **FAST)
    assert isinstance(rep, LatencyReport)
    d = json.loads(rep.to_json())
    for key in ("ttft_ms", "tpot_ms", "ttlt_ms"):
        assert STAT_KEYS <= set(d[key]) and d[key]["n"] >= 2 and d[key]["median"] > 0
    assert d["tpot_ms"]["n"] == d["tpot_ms"]["n"] // 4 * 4          # whole passes of G-1 = 4 steps
    assert (d["batch"], d["prompt_len"], d["gen_len"], d["device"], d["cuda_graph"]) == (2, 8, 5, "cpu", False)
    assert d["tpot_from_ttlt_ms"] > 0 and set(d["ttlt_split_ms"]) == {"prefill", "decode"}
    assert set(d["energy"]) >= {"j_per_prompt", "j_per_token", "j_per_request", "per_sequence"}
    assert d["energy"]["reason"] == "energy off (--no-energy)"
    assert len(d["tpot_samples_ms"]) == d["tpot_ms"]["n"]
    assert d["roofline"]["achieved_bw_bytes_per_s"] > 0
    assert list(rep.to_dataframe()["phase"]) == ["ttft", "tpot", "ttlt"]
    text = rep.to_text()
    assert "TTFT (prefill)" in text and "TPOT = (TTLT-TTFT)/(G-1)" in text


def test_single_phase(tiny_llama):
    rep = measure_latency(tiny_llama, phases=["ttft"], prompt_len=8, gen_len=1, energy=False, **FAST)
    assert rep.ttft_ms["n"] == 2 and rep.tpot_ms["n"] == 0 and rep.ttlt_ms["n"] == 0


def test_energy_per_phase_with_sensor_double(tiny_llama, constant_power):
    with EnergyMeter(sensors=[constant_power()], measure_idle=False) as meter:
        rep = measure_latency(tiny_llama, batch=2, prompt_len=8, gen_len=4, meter=meter,
                              energy_window_s=0.2, **FAST)
    e = rep.energy
    windows = e["windows"]
    assert set(windows) == {"ttft", "tpot", "ttlt"}
    for phase, key in (("ttft", "j_per_prompt"), ("tpot", "j_per_token"), ("ttlt", "j_per_request")):
        w = windows[phase]
        assert w["duration_s"] >= 0.2
        assert e[key] == pytest.approx(w["energy_j"] / w["iterations"], rel=1e-6)
        assert e[key] == pytest.approx(50.0 * w["duration_s"] / w["iterations"], rel=0.15)  # short windows: edge reads
        assert e["per_sequence"][key] == pytest.approx(e[key] / 2)
    split = e["request_split_j"]
    assert split["prefill"] > 0 and split["decode"] > 0
    assert split["prefill"] + split["decode"] == pytest.approx(e["j_per_request"], rel=0.2)
    assert e["tokens_per_j"] == pytest.approx(2 / e["j_per_token"])
    # the table's energy columns share one unit (J or mJ), so the figure is in one of the two spellings
    assert format_energy(e["j_per_token"]) in rep.to_text() or f"{e['j_per_token']:.4g} J" in rep.to_text()


def test_no_sensor_is_a_note(tiny_llama, no_nvml):
    rep = measure_latency(tiny_llama, prompt_len=8, gen_len=3, **FAST)
    assert rep.energy["j_per_token"] is None and rep.energy["j_per_prompt"] is None
    assert rep.energy["reason"].startswith("energy unavailable")
    assert any(n.startswith("energy unavailable") for n in rep.notes)
    assert rep.tpot_ms["n"] > 0  # the latencies are measured all the same


def test_prompt_text_sets_prompt_len(default_model):
    lm = default_model
    rep = measure_latency(lm.model, tokenizer=lm.tokenizer, prompt="The capital of France is", gen_len=3,
                          phases=["ttft"], energy=False, **FAST)
    assert rep.prompt_len == len(lm.tokenizer("The capital of France is")["input_ids"])
    assert any("follows the prompt" in n for n in rep.notes)


def test_prompt_without_tokenizer(tiny_llama):
    with pytest.raises(GenerationInputError, match="needs a tokenizer"):
        measure_latency(tiny_llama, prompt="hello", **FAST)


def test_state_kept_after_error(tiny_llama):
    tiny_llama.train()
    try:
        with pytest.raises(GenerationInputError):
            measure_latency(tiny_llama, prompt_len=2000, gen_len=8, **FAST)
        assert tiny_llama.training
        calls = []

        def interrupt(module, args):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt

        handle = tiny_llama.register_forward_pre_hook(interrupt)
        try:
            with pytest.raises(KeyboardInterrupt):
                measure_latency(tiny_llama, prompt_len=8, gen_len=4, **FAST)
        finally:
            handle.remove()
        assert tiny_llama.training
    finally:
        tiny_llama.eval()


def test_figure_draws_only_panels_with_data(tiny_llama):
    """No panel holds only placeholder text: without a sensor or a peak, no energy or roofline panel."""
    rep = measure_latency(tiny_llama, prompt_len=8, gen_len=4, energy=False, **FAST)
    titles = [ax.get_title(loc="left") for ax in rep.figure().axes if ax.axison]
    assert titles == ["latency per phase", "inter-token latency distribution"]
    # no placeholder text (the bars' value labels are annotations)
    assert all(type(t).__name__ == "Annotation" for ax in rep.figure().axes for t in ax.texts)
    assert "<img" in rep.to_html() and "energy/seq" not in rep.to_html()  # no column of dashes either
    rep = measure_latency(tiny_llama, prompt_len=8, gen_len=4, energy=False, peak_bw=1e9, peak_flops=1e12, **FAST)
    titles = [ax.get_title(loc="left") for ax in rep.figure().axes if ax.axison]
    assert titles[-1] == "roofline: share of the hardware's peak" and len(titles) == 3
    assert "floor" in rep.to_text()


def test_request_split_from_counters(tiny_llama, constant_power):
    with EnergyMeter(sensors=[constant_power()], measure_idle=False) as meter:
        rep = measure_latency(tiny_llama, prompt_len=8, gen_len=4, meter=meter, energy_window_s=0.2, **FAST)
    split = rep.energy["request_split_counter_j"]
    assert split["prefill"] == rep.energy["j_per_prompt"]
    assert split["decode"] == pytest.approx(3 * rep.energy["j_per_token"])
    assert "request energy from the phase counters" in rep.to_text()
