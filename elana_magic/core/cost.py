"""What running the measured model costs: money per 1M generated tokens from a GPU-hour price, and the
energy's cost and CO2e from an electricity price and a grid's carbon intensity.

The three rates are the user's, never ours: given as options (``--usd-per-gpu-hour``, ``--usd-per-kwh``,
``--gco2-per-kwh``; ``usd_per_gpu_hour=`` ... in Python) or in the environment (``ELANA_USD_PER_GPU_HOUR``,
``ELANA_USD_PER_KWH``, ``ELANA_GCO2_PER_KWH``). With none given nothing is computed or shown.

A token's share of the GPU time and energy comes from whole requests where TTLT was measured: a batch of B
sequences makes B x G tokens in one TTLT (prefill included) on every GPU the model occupies, so
$/1M tokens = price x GPUs x TTLT / (B x G) x 1e6 / 3600. Without TTLT it comes from the decode step alone
(B tokens per TPOT, no prefill), and ``basis`` says which.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import ElanaError

RATES = ("usd_per_gpu_hour", "usd_per_kwh", "gco2_per_kwh")
RATE_ENV = {"usd_per_gpu_hour": "ELANA_USD_PER_GPU_HOUR", "usd_per_kwh": "ELANA_USD_PER_KWH",
            "gco2_per_kwh": "ELANA_GCO2_PER_KWH"}
RATE_UNITS = {"usd_per_gpu_hour": "$/GPU-hour", "usd_per_kwh": "$/kWh", "gco2_per_kwh": "gCO2e/kWh"}
J_PER_KWH = 3.6e6
PER_TOKENS = 1e6


class CostRateError(ElanaError, ValueError):
    """A rate that is not a finite number >= 0 (the option's or the environment variable's)."""


def check_rate(name: str, value: Any, where: str | None = None) -> float | None:
    """``value`` as a rate (a finite number >= 0), or None; ``where`` names its source in the message."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise CostRateError(f"{where or name} must be a number >= 0 in {RATE_UNITS[name]}, got {value!r}")
    return float(value)


def rate_from_env(name: str) -> float | None:
    """The environment's default for one rate (None when unset or empty)."""
    var = RATE_ENV[name]
    text = os.environ.get(var, "").strip()
    return check_rate(name, text, where=var) if text else None


def given(rates: dict[str, float | None]) -> bool:
    return any(rates.get(k) is not None for k in RATES)


def cost_section(rates: dict[str, float | None], *, tpot_s: float | None, ttlt_s: float | None, batch: int,
                 gen_len: int, gpus: int, j_per_token_seq: float | None,
                 j_per_request_seq: float | None) -> dict[str, Any] | None:
    """The cost figures a latency report carries (None when no rate is given). A figure whose measurement is
    missing (no energy without a sensor, no TPOT/TTLT measured) is left out and ``missing`` says why."""
    if not given(rates):
        return None
    price, kwh_price, carbon = (rates.get(k) for k in RATES)
    request = ttlt_s is not None and gen_len > 0
    out: dict[str, Any] = {"rates": {k: rates.get(k) for k in RATES}, "gpus": gpus, "missing": [],
                           "basis": "request" if request else "decode step"}
    seconds_per_token = ttlt_s / (batch * gen_len) if request else (tpot_s / batch if tpot_s else None)
    j_per_token = (j_per_request_seq / gen_len if request and j_per_request_seq is not None
                   else j_per_token_seq)
    if price is not None:
        if seconds_per_token is None:
            out["missing"].append("$ per 1M tokens needs TTLT or TPOT measured")
        else:
            out["usd_per_1m_tokens"] = price * gpus * seconds_per_token * PER_TOKENS / 3600
        if request:
            out["usd_per_request"] = price * gpus * ttlt_s / batch / 3600
    wanted = [(key, rate, what) for key, rate, what in (("energy_usd", kwh_price, "energy cost"),
                                                          ("gco2", carbon, "CO2e")) if rate is not None]
    if wanted and j_per_token is None:
        out["missing"].append(f"{' and '.join(w for _, _, w in wanted)} need energy, and no sensor measured it here")
        return out
    for key, rate, _ in wanted:
        out[f"{key}_per_1m_tokens"] = j_per_token * PER_TOKENS / J_PER_KWH * rate
        if j_per_request_seq is not None:
            out[f"{key}_per_request"] = j_per_request_seq / J_PER_KWH * rate
    return out


def format_usd(value: float) -> str:
    """$ with three significant digits, small amounts included ($0.000123)."""
    if value == 0:
        return "$0"
    digits = max(2, 2 - math.floor(math.log10(abs(value))))
    return f"${value:,.{digits}f}" if abs(value) < 100 else f"${value:,.0f}"


def format_grams(value: float) -> str:
    return f"{value / 1e3:.3g} kg" if value >= 1e3 else f"{value:.3g} g" if value >= 0.01 else f"{value * 1e3:.3g} mg"


def cost_lines(cost: dict[str, Any] | None) -> list[str]:
    """The cost as the report's text lines (none without rates)."""
    if not cost:
        return []
    rates = ", ".join(f"{_rate_text(k, v)}" for k, v in cost["rates"].items() if v is not None)
    parts = []
    if cost.get("usd_per_1m_tokens") is not None:
        gpus = f" on {cost['gpus']} GPUs" if cost.get("gpus", 1) > 1 else ""
        parts.append(f"{format_usd(cost['usd_per_1m_tokens'])} per 1M tokens of GPU time{gpus}")
    if cost.get("energy_usd_per_1m_tokens") is not None:
        parts.append(f"energy {format_usd(cost['energy_usd_per_1m_tokens'])} per 1M tokens")
    if cost.get("gco2_per_1m_tokens") is not None:
        parts.append(f"{format_grams(cost['gco2_per_1m_tokens'])} CO2e per 1M tokens")
    per_request = []
    if cost.get("usd_per_request") is not None:
        per_request.append(format_usd(cost["usd_per_request"]))
    if cost.get("gco2_per_request") is not None:
        per_request.append(f"{format_grams(cost['gco2_per_request'])} CO2e")
    basis = "whole requests, prefill included" if cost.get("basis") == "request" else "decode steps only"
    lines = [f"cost ({rates}; from {basis}): " + ("; ".join(parts) if parts else "nothing to compute")]
    if per_request:
        lines.append("cost per request: " + ", ".join(per_request))
    lines += [f"cost: {m}" for m in cost.get("missing") or []]
    return lines


def _rate_text(name: str, value: float) -> str:
    return f"{value:g} {RATE_UNITS[name]}"


COST_FIGURES = ("usd_per_1m_tokens", "usd_per_request", "energy_usd_per_1m_tokens", "energy_usd_per_request",
                "gco2_per_1m_tokens", "gco2_per_request")


def cost_columns(cost: dict[str, Any] | None) -> dict[str, float]:
    """The cost figures as DataFrame columns (numbers; the unit is in the name)."""
    return {k: cost[k] for k in COST_FIGURES if cost and cost.get(k) is not None}
