"""Cost per 1M tokens and per request, from the user's rates only: arithmetic, options, environment defaults,
the report's views, the DataFrame, a grid's rows and the comparison."""

import subprocess
import sys

import pytest
from IPython.core.error import UsageError

from elana_magic.core.compare import compare
from elana_magic.core.cost import RATE_ENV, cost_lines, cost_section, format_usd
from elana_magic.energy import EnergyMeter
from elana_magic.latency import GenerationInputError, LatencySettings, measure_latency

FAST = dict(warmup=1, repeats=6, min_time=0, progress=False)
RATES = dict(usd_per_gpu_hour=2.5, usd_per_kwh=0.15, gco2_per_kwh=400.0)


@pytest.fixture(autouse=True)
def no_rates_in_env(monkeypatch):
    for var in RATE_ENV.values():
        monkeypatch.delenv(var, raising=False)


def test_arithmetic_from_whole_requests_and_from_decode_steps():
    # 2 GPUs at $3/h; batch 4 x 100 tokens in a 2 s request: 2 GPU-s per 400 tokens... per 1M tokens:
    c = cost_section(dict(usd_per_gpu_hour=3.0, usd_per_kwh=None, gco2_per_kwh=None), tpot_s=0.01, ttlt_s=2.0,
                     batch=4, gen_len=100, gpus=2, j_per_token_seq=None, j_per_request_seq=None)
    assert c["basis"] == "request"
    assert c["usd_per_1m_tokens"] == pytest.approx(3.0 * 2 * 2.0 / 400 * 1e6 / 3600)   # $8.33
    assert c["usd_per_request"] == pytest.approx(3.0 * 2 * 2.0 / 4 / 3600)
    # TPOT only: B tokens per step, no prefill
    c = cost_section(dict(usd_per_gpu_hour=3.0), tpot_s=0.01, ttlt_s=None, batch=4, gen_len=100, gpus=1,
                     j_per_token_seq=None, j_per_request_seq=None)
    assert c["basis"] == "decode step" and c["usd_per_1m_tokens"] == pytest.approx(3.0 * 0.01 / 4 * 1e6 / 3600)
    assert "usd_per_request" not in c


def test_energy_cost_and_carbon_from_the_measured_joules():
    # 0.36 J per token = 0.1 kWh per 1M tokens; a request of 10 tokens took 4.5 J (prefill included)
    c = cost_section(dict(usd_per_kwh=0.2, gco2_per_kwh=500.0), tpot_s=None, ttlt_s=0.5, batch=1, gen_len=10,
                     gpus=1, j_per_token_seq=0.36, j_per_request_seq=4.5)
    per_token = 4.5 / 10   # whole requests: the prefill's energy spread over the tokens
    assert c["energy_usd_per_1m_tokens"] == pytest.approx(per_token * 1e6 / 3.6e6 * 0.2)
    assert c["gco2_per_1m_tokens"] == pytest.approx(per_token * 1e6 / 3.6e6 * 500)
    assert c["gco2_per_request"] == pytest.approx(4.5 / 3.6e6 * 500)
    assert "usd_per_1m_tokens" not in c   # no GPU-hour price given: no such figure
    no_sensor = cost_section(dict(usd_per_kwh=0.2, gco2_per_kwh=500.0), tpot_s=0.01, ttlt_s=0.5, batch=1,
                             gen_len=10, gpus=1, j_per_token_seq=None, j_per_request_seq=None)
    assert no_sensor["missing"] == ["energy cost and CO2e need energy, and no sensor measured it here"]


def test_nothing_without_rates():
    assert cost_section({}, tpot_s=0.01, ttlt_s=1.0, batch=1, gen_len=8, gpus=1, j_per_token_seq=1.0,
                        j_per_request_seq=8.0) is None
    assert cost_lines(None) == []


def test_money_keeps_three_digits():
    assert format_usd(8.333) == "$8.33" and format_usd(0.000123) == "$0.000123" and format_usd(1234.5) == "$1,234"


def test_rates_come_from_the_environment_and_are_checked(monkeypatch):
    assert LatencySettings().usd_per_gpu_hour is None
    monkeypatch.setenv("ELANA_USD_PER_GPU_HOUR", "2.5")
    monkeypatch.setenv("ELANA_GCO2_PER_KWH", "")   # empty: unset
    s = LatencySettings()
    assert s.usd_per_gpu_hour == 2.5 and s.gco2_per_kwh is None
    assert LatencySettings(usd_per_gpu_hour=1.0).usd_per_gpu_hour == 1.0   # given beats the environment
    assert LatencySettings.from_dict(s.to_dict()) == s
    monkeypatch.setenv("ELANA_USD_PER_KWH", "cheap")
    with pytest.raises(GenerationInputError, match="ELANA_USD_PER_KWH must be a number >= 0 in \\$/kWh"):
        LatencySettings()
    monkeypatch.delenv("ELANA_USD_PER_KWH")
    with pytest.raises(GenerationInputError, match="usd_per_gpu_hour must be a number >= 0"):
        LatencySettings(usd_per_gpu_hour=-1)


def test_report_shows_cost_and_exports_it(tiny_llama, constant_power):
    with EnergyMeter(sensors=[constant_power()], measure_idle=False) as meter:
        rep = measure_latency(tiny_llama, prompt_len=8, gen_len=4, meter=meter, **RATES, **FAST)
    c = rep.cost
    assert c["basis"] == "request" and c["usd_per_1m_tokens"] > 0 and c["gco2_per_1m_tokens"] > 0
    assert c["energy_usd_per_1m_tokens"] == pytest.approx(c["gco2_per_1m_tokens"] / 400 * 0.15)
    text = rep.to_text()
    assert "cost (2.5 $/GPU-hour, 0.15 $/kWh, 400 gCO2e/kWh; from whole requests, prefill included)" in text
    assert "per 1M tokens of GPU time" in text and "CO2e per 1M tokens" in text
    assert "per 1M tokens of GPU time" in rep._repr_html_()
    df = rep.to_dataframe()
    assert {"usd_per_1m_tokens", "gco2_per_1m_tokens", "usd_per_request"} <= set(df.columns)
    assert rep.headline_figures()["$/1M tokens"].startswith("$")
    assert rep.envelope.settings["usd_per_gpu_hour"] == 2.5   # the rates the figures rest on are recorded


def test_no_cost_shown_without_rates(tiny_llama):
    rep = measure_latency(tiny_llama, prompt_len=8, gen_len=4, energy=False, **FAST)
    # (the word alone may be in a note on a busy machine: "... or first-run costs")
    assert "cost" not in rep.to_dict() and "per 1M tokens" not in rep.to_text() and "cost (" not in rep.to_text()
    assert "usd_per_1m_tokens" not in rep.to_dataframe().columns


def test_comparison_has_the_cost_with_the_interval_of_its_timed_figure(tiny_llama):
    import copy

    a = measure_latency(tiny_llama, prompt_len=8, gen_len=4, energy=False, usd_per_gpu_hour=2.0, **FAST)
    b = measure_latency(copy.deepcopy(tiny_llama), prompt_len=8, gen_len=4, energy=False, usd_per_gpu_hour=2.0,
                        **FAST)
    comp = compare([a, b])
    cost, ttlt = comp.ratio("cost per 1M tokens"), comp.ratio("TTLT")
    assert cost.ratio == pytest.approx(ttlt.ratio, rel=1e-6)   # the same price: cost moves with TTLT
    if ttlt.ci_low is not None:
        assert (cost.ci_low, cost.ci_high) == pytest.approx((ttlt.ci_low, ttlt.ci_high))
    assert "cost per 1M tokens" in comp.to_text() and "$" in comp.to_text()


def test_grid_rows_carry_the_cost(tiny_llama):
    grid = measure_latency(tiny_llama, batch=[1, 2], prompt_len=8, gen_len=4, energy=False, usd_per_gpu_hour=2.0,
                           **FAST)
    assert all(r["usd_per_1m_tokens"] > 0 for r in grid.cells)
    header, rows = grid._table()
    assert "$/1M tokens" in header and "gCO2e/1M tokens" not in header   # no carbon rate: no empty column
    assert all(row[header.index("$/1M tokens")].startswith("$") for row in rows)


def test_magic_option_and_its_bad_value(ip, tiny_llama):
    ip.user_ns["model"] = tiny_llama
    rep = ip.run_line_magic("elana_latency", "model --prompt-len 8 --gen-len 4 --warmup 0 --repeats 2 --min-time 0 "
                                             "--no-energy --usd-per-gpu-hour 2.5 -o -q")
    assert rep.cost["rates"]["usd_per_gpu_hour"] == 2.5 and rep.cost["usd_per_1m_tokens"] > 0
    with pytest.raises(UsageError, match="--usd-per-kwh takes a number >= 0 in \\$ per kWh"):
        ip.run_line_magic("elana_latency", "model --usd-per-kwh -0.1")


def test_command_takes_the_rates():
    out = subprocess.run([sys.executable, "-m", "elana_magic", "random:tiny-llama", "--ttlt", "--prompt-len", "8",
                          "--gen-len", "4", "--repeats", "2", "--min-time", "0", "--no-energy",
                          "--usd-per-gpu-hour", "2.5"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "per 1M tokens of GPU time" in out.stdout
    help_text = subprocess.run([sys.executable, "-m", "elana_magic", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    assert "--usd-per-gpu-hour" in help_text and "--gco2-per-kwh" in help_text


def test_cost_at_other_rates_equals_measuring_with_them(tiny_llama, constant_power, tmp_path):
    from elana_magic.core.envelope import load_report

    with EnergyMeter(sensors=[constant_power()], measure_idle=False) as meter:
        rep = measure_latency(tiny_llama, prompt_len=8, gen_len=4, meter=meter, **RATES, **FAST)
    assert rep.cost_at(**RATES) == rep.cost
    path = tmp_path / "r.json"
    rep.save(str(path))
    again = load_report(str(path)).cost_at(usd_per_gpu_hour=5.0)   # a saved report, another price
    assert again["usd_per_1m_tokens"] == pytest.approx(2 * rep.cost["usd_per_1m_tokens"])
    assert rep.cost_at() is None
    with pytest.raises(ValueError, match="usd_per_kwh must be a number >= 0"):
        rep.cost_at(usd_per_kwh=-1)
