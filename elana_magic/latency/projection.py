"""Projection of a measured latency report to other GPUs of the peaks table (``roofline.DEVICE_PEAKS``).

    project(report, ["H100", "L4", "Jetson AGX Orin"]) -> ProjectionReport   # a report, a dict or a saved file
    %elana_latency model --project H100 L4 "Jetson AGX Orin"                 # a section of the latency report

What was measured here, carried to another card at the same efficiency:

* decode: TPOT' = decode_step_bytes / (MBU x peak_bw'), MBU = bytes / TPOT / peak_bw here; so
  TPOT' = TPOT x peak_bw / peak_bw' (the bandwidth ratio at the measured fraction of peak);
* prefill: TTFT' = prefill_flops / (MFU x peak_flops'), the same with the FLOP/s ratio;
* tokens/s' = batch / TPOT'; TTLT' = TTFT' + (G - 1) x TPOT'.

The range takes the efficiency of the fastest and of the slowest decode steps and prefills the report
holds (p10 and p90 of the samples; min and max under 10 samples; the summary's median and p90 when no
samples were saved) and says which. Memory fit: the model + cache (the report's memory section, or the
roofline's weights + cache at prompt + gen tokens) and the measured allocator peak, the larger one,
against the card's datasheet memory; a card it does not fit gets no figures ("does not fit: needs X of Y").

Every figure is a projection, not a measurement: it assumes the same efficiency as measured here, the
weights and cache bytes as stored (same dtype and quantization), and no kernel or software change (the
same engine). It does not hold across dtypes or engines, and efficiency itself differs between cards.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..core.envelope import ENVELOPE_KEYS, Envelope
from ..core.errors import ElanaError
from ..core.report import DataReport, html_table, text_table
from ..core.schema import OBJECT, OBJECTS, TEXTS
from ..core.units import bytes_unit, format_time
from .roofline import DEVICE_PEAKS, Peak, lookup_peak

GB = 1e9
RANGE_SAMPLES = 10  # from this many samples the range is p10-p90, below it min-max


class ProjectionError(ElanaError, ValueError):
    """One line: an unknown card name, or a report that holds nothing to project from."""


def format_bytes(n: float | None) -> str:
    """Three significant digits: '16 GB', '2.49 GB', '312 MB'."""
    if n is None:
        return "-"
    scale, unit = bytes_unit(n)
    return f"{n / scale:.3g} {unit}"


# -- cards -----------------------------------------------------------------------------------------
def known_cards() -> list[str]:
    return [peak.name for _, peak in DEVICE_PEAKS]


def _unquote(text: str) -> str:
    text = str(text).strip()
    return text[1:-1].strip() if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def find_card(name: str) -> Peak:
    """The peaks table's entry for ``name``: its own name, else matched like a device name (case-insensitive
    keywords: "H100" -> H100 SXM, "Jetson AGX Orin" -> Jetson AGX Orin 64GB)."""
    text = _unquote(name)
    low = " ".join(text.lower().split())
    for _, peak in DEVICE_PEAKS:
        if peak.name.lower() == low:
            return peak
    peak = lookup_peak(low) if low else None
    if peak is None:
        raise ProjectionError(f"unknown GPU {text!r} for the projection; known: {', '.join(known_cards())}")
    return peak


def resolve_targets(names) -> list[tuple[str, Peak]]:
    """[(name as asked, Peak)] in the order given, each card once; ProjectionError for an unknown name."""
    if isinstance(names, str):
        names = [names]
    out: dict[str, tuple[str, Peak]] = {}
    for name in names or []:
        peak = find_card(name)
        out.setdefault(peak.name, (_unquote(name), peak))
    if not out:
        raise ProjectionError(f"no GPU to project to; known: {', '.join(known_cards())}")
    return list(out.values())


def check_projectable(model, peak_bw: float | None, peak_flops: float | None) -> None:
    """Before measuring ``model`` where it is: a device without a known peak (a CPU) projects only with
    --peak-bw/--peak-flops (the measured MBU/MFU need a peak)."""
    if peak_bw or peak_flops:
        return
    from .roofline import device_name as _device_name

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else None
    on_gpu = device is not None and device.type == "cuda"
    device_name = _device_name(device) if device is not None else None
    if on_gpu and lookup_peak(device_name):
        return
    raise ProjectionError(f"--project needs the measured fraction of peak (MBU/MFU), and no peak is known for "
                          f"{device_name or 'this device'}: give --peak-bw and/or --peak-flops (its own peaks)")


# -- the figures -----------------------------------------------------------------------------------
def _report_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, (str, os.PathLike)):  # latency reports are registered: the package imports .report
        from ..core.envelope import load_report

        report = load_report(report)
    data = report.to_dict() if hasattr(report, "to_dict") else report
    if not isinstance(data, dict):
        raise ProjectionError(f"project() takes a latency report, its to_dict() or a saved file, got {type(report).__name__}")
    kind = data.get("kind", "latency")
    if kind != "latency" or "tpot_ms" not in data:
        what = "a grid (project one cell: grid.reports[i])" if "cells" in data else repr(kind)
        raise ProjectionError(f"projection takes a latency report of one configuration, got {what}")
    if (data.get("ngpus") or 1) > 1:
        raise ProjectionError(f"projection takes a one-GPU latency report; this one ran {data['ngpus']} replicas")
    return data


def _spread(data: dict[str, Any], phase: str) -> tuple[float, float, float, str] | None:
    """(median, fast end, slow end, which) of one phase's times in ms, or None when it was not measured."""
    stats = data.get(f"{phase}_ms") or {}
    med = stats.get("median")
    if med is None or stats.get("n") == 0:
        return None
    xs = sorted(x for x in data.get(f"{phase}_samples_ms") or [] if isinstance(x, (int, float)) and math.isfinite(x))
    if len(xs) >= RANGE_SAMPLES:
        return med, _percentile(xs, 10), _percentile(xs, 90), f"p10 and p90 of {len(xs)} samples"
    if len(xs) >= 2:
        return med, xs[0], xs[-1], f"the fastest and slowest of {len(xs)} samples"
    if stats.get("p90") is not None:
        return med, med, max(med, stats["p90"]), "the median and p90 of the saved summary (no samples kept)"
    return med, med, med, "the median alone"


def _percentile(xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of sorted ``xs``."""
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _memory_need(data: dict[str, Any]) -> tuple[float | None, str]:
    """The bytes the model needs on a card, and how that was found."""
    r = data.get("roofline") or {}
    phases = (data.get("memory") or {}).get("phases") or []
    full = data["prompt_len"] + data["gen_len"]
    analytic = max((p["analytic_bytes"] for p in phases if p.get("analytic_bytes") is not None), default=None)
    basis = f"model + cache at {full} tokens (the report's memory section)"
    if analytic is None and r.get("weights_read_bytes") is not None:
        ctx, kv = r.get("decode_context_tokens"), r.get("kv_read_bytes") or 0
        scaled = bool(ctx) and ctx != full
        analytic = r["weights_read_bytes"] + (kv * full / ctx if scaled else kv)
        basis = (f"weights + cache at {full} tokens (the roofline's bytes"
                 + (f", its cache scaled from {ctx} tokens)" if scaled else ")"))
    measured = max((p["measured_peak_bytes"] for p in phases
                    if p.get("measured_kind") == "allocated" and p.get("measured_peak_bytes")), default=None)
    if measured is not None and (analytic is None or measured > analytic):
        if analytic is None:
            return float(measured), "the measured allocator peak (activations and workspace included)"
        return float(measured), (f"the measured allocator peak, activations and workspace included; {basis}: "
                                 f"{format_bytes(analytic)}")
    return (None if analytic is None else float(analytic)), basis


def projection_section(report: Any, targets, *, peak_bw: float | None = None,
                       peak_flops: float | None = None) -> dict[str, Any]:
    """The projection of ``report`` to ``targets`` as a plain dict (the payload of a ProjectionReport and the
    ``projection`` section of a latency report). ``peak_bw`` / ``peak_flops``: the peaks of the device it was
    measured on, where the report has none (a CPU) or to override them."""
    data = _report_dict(report)
    cards = resolve_targets(targets)
    r = data.get("roofline") or {}
    bw = peak_bw or r.get("peak_bw_bytes_per_s")
    fl = peak_flops or r.get("peak_flops_per_s")
    tpot, ttft = _spread(data, "tpot"), _spread(data, "ttft")
    step_bytes, pf = r.get("decode_step_bytes"), r.get("prefill_flops")
    decode = bool(tpot and bw and step_bytes)
    prefill = bool(ttft and fl and pf)
    where = data.get("device_name") or data.get("device") or "this device"
    if not decode and not prefill:
        measured = [p for p, s in (("TPOT", tpot), ("TTFT", ttft)) if s]
        if not measured:
            raise ProjectionError("the report has neither TPOT nor TTFT measured: nothing to project")
        raise ProjectionError(f"the report has no MBU/MFU (no peak known for {where}): measure with --peak-bw/"
                              "--peak-flops (the device's own peaks), or pass peak_bw=/peak_flops= to project()")
    batch, gen = data["batch"], data["gen_len"]

    def eff(work, ms, peak):  # the measured fraction of peak at a time of ``ms``
        return work / (ms / 1e3) / peak

    source: dict[str, Any] = {
        "label": data.get("label"), "model": data.get("model"), "device_name": where, "engine": data.get("engine"),
        "engines": data.get("engines"), "batch": batch, "prompt_len": data["prompt_len"], "gen_len": gen,
        "card": (lookup_peak(where).name if lookup_peak(where) else None),
        "peak_bw_bytes_per_s": bw, "peak_flops_per_s": fl,
        "peak_source": "given" if (peak_bw or peak_flops) else r.get("peak_source"),
        "decode_step_bytes": step_bytes, "prefill_flops": pf,
        "tpot_ms": tpot[0] if tpot else None, "ttft_ms": ttft[0] if ttft else None,
        "ttlt_ms": (data.get("ttlt_ms") or {}).get("median") if (data.get("ttlt_ms") or {}).get("n") else None,
        "tpot_ms_range": list(tpot[1:3]) if tpot else None, "ttft_ms_range": list(ttft[1:3]) if ttft else None,
        "tpot_range_from": tpot[3] if tpot else None, "ttft_range_from": ttft[3] if ttft else None,
        "mbu": eff(step_bytes, tpot[0], bw) if decode else None,
        "mbu_range": [eff(step_bytes, tpot[1], bw), eff(step_bytes, tpot[2], bw)] if decode else None,
        "mfu": eff(pf, ttft[0], fl) if prefill else None,
        "mfu_range": [eff(pf, ttft[1], fl), eff(pf, ttft[2], fl)] if prefill else None,
    }
    need, need_basis = _memory_need(data)
    source["needed_bytes"], source["needed_from"] = need, need_basis
    rows = [_project_card(asked, peak, source, decode, prefill) for asked, peak in cards]
    notes = []
    if not decode and tpot:
        notes.append(f"decode not projected: no peak bandwidth known for {where} (no MBU)")
    if not prefill and ttft:
        notes.append(f"prefill not projected: no peak FLOP/s known for {where} (no MFU)")
    if len([d for d in data.get("devices") or [] if str(d).startswith("cuda")]) > 1:
        notes.append("the model was spread over several GPUs here; the projection is for one card holding it all")
    return {"method": METHOD, "assumptions": assumptions(source), "source": source, "targets": rows,
            "notes": notes}


METHOD = ("decode TPOT = bytes per step / (measured MBU x the card's peak bandwidth); prefill TTFT = FLOPs / "
          "(measured MFU x the card's peak FLOP/s); tokens/s = batch / TPOT; TTLT = TTFT + (G-1) x TPOT")


def assumptions(source: dict[str, Any]) -> list[str]:
    engine = source.get("engine")
    prefill = (source.get("engines") or {}).get("prefill")
    engines = f"{prefill} prefill, {engine} decode" if prefill else f"{engine} decode"
    return [f"the same efficiency as measured here on {source['device_name']} (a projection, not a measurement)",
            "the weights and cache bytes as stored here (same dtype and quantization)",
            f"no kernel or software change ({engines}, the same versions)"]


def _project_card(asked: str, peak: Peak, src: dict[str, Any], decode: bool, prefill: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"card": peak.name, "asked": asked, "projected": True,
                           "peak_bw_bytes_per_s": peak.bandwidth, "peak_flops_per_s": peak.flops,
                           "peak_source": peak.source,
                           "memory_bytes": peak.memory_gb * GB if peak.memory_gb else None,
                           "needed_bytes": src["needed_bytes"], "fits": None, "status": "projected", "notes": []}
    for key in ("tpot_ms", "ttft_ms", "ttlt_ms", "tokens_per_s"):
        row[key] = row[f"{key}_range"] = None
    if row["memory_bytes"] and src["needed_bytes"] is not None:
        row["fits"] = src["needed_bytes"] <= row["memory_bytes"]
        if not row["fits"]:
            row["status"] = f"does not fit: needs {format_bytes(src['needed_bytes'])} of {peak.memory_gb:g} GB"
            return row
    if "jetson" in peak.name.lower():
        row["notes"].append("Jetson: the memory is shared with the CPU and the OS (unified), and so is its bandwidth: "
                            "less is free than the datasheet's")
    if src.get("card") == peak.name:
        row["notes"].append("the card this was measured on: the projection gives back the measurement")
    if decode:
        mbu, (best, worst) = src["mbu"], src["mbu_range"]
        row["tpot_ms"] = src["decode_step_bytes"] / (mbu * peak.bandwidth) * 1e3
        row["tpot_ms_range"] = [src["decode_step_bytes"] / (best * peak.bandwidth) * 1e3,
                                src["decode_step_bytes"] / (worst * peak.bandwidth) * 1e3]
        row["tokens_per_s"] = src["batch"] / (row["tpot_ms"] / 1e3)
        row["tokens_per_s_range"] = [src["batch"] / (row["tpot_ms_range"][1] / 1e3),
                                     src["batch"] / (row["tpot_ms_range"][0] / 1e3)]
    if prefill:
        mfu, (best, worst) = src["mfu"], src["mfu_range"]
        row["ttft_ms"] = src["prefill_flops"] / (mfu * peak.flops) * 1e3
        row["ttft_ms_range"] = [src["prefill_flops"] / (best * peak.flops) * 1e3,
                                src["prefill_flops"] / (worst * peak.flops) * 1e3]
    if decode and prefill:
        steps = src["gen_len"] - 1
        row["ttlt_ms"] = row["ttft_ms"] + steps * row["tpot_ms"]
        row["ttlt_ms_range"] = [row["ttft_ms_range"][i] + steps * row["tpot_ms_range"][i] for i in (0, 1)]
    if row["fits"] and row["needed_bytes"] > 0.9 * row["memory_bytes"]:
        row["notes"].append("fits within 10% of the whole memory: the CUDA context and other processes may not leave "
                            "room")
    return row


# -- lines and tables (the ProjectionReport's and the latency report's section) ---------------------
def _t(ms: float | None) -> str:
    return "-" if ms is None else format_time(ms / 1e3)


def _span(pair: list[float] | None, fmt=_t) -> str:
    return "-" if not pair else f"{fmt(pair[0])} - {fmt(pair[1])}"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def projection_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The measured row, then one row per card: projected figures and their ranges, memory against capacity."""
    src = section["source"]
    header = ["GPU", "TPOT", "TPOT range", "tokens/s", "TTFT", "TTFT range", "TTLT", "memory"]
    here = f"{src['card'] or src['device_name']} (measured)"
    need = format_bytes(src["needed_bytes"]) if src.get("needed_bytes") is not None else "-"
    tps = src["batch"] / (src["tpot_ms"] / 1e3) if src.get("tpot_ms") else None
    rows = [[here, _t(src["tpot_ms"]), _span(src["tpot_ms_range"]), _rate(tps), _t(src["ttft_ms"]),
             _span(src["ttft_ms_range"]), _t(src["ttlt_ms"]), f"needs {need}"]]
    for row in section["targets"]:
        name = f"{row['card']} (projected)"
        mem = ("-" if row["memory_bytes"] is None else
               f"{need} of {row['memory_bytes'] / GB:g} GB" if row["fits"] is not False else "does not fit")
        if row["fits"] is False:
            rows.append([name, row["status"], "-", "-", "-", "-", "-", mem])
            continue
        rows.append([name, _t(row["tpot_ms"]), _span(row["tpot_ms_range"]), _rate(row["tokens_per_s"]),
                     _t(row["ttft_ms"]), _span(row["ttft_ms_range"]), _t(row["ttlt_ms"]), mem])
    keep = [i for i in range(len(header)) if i == 0 or any(r[i] not in ("-", "needs -") for r in rows)]
    return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]


def projection_lines(section: dict[str, Any] | None) -> list[str]:
    """What the projection assumes, where its range comes from, the memory fit and each card's notes."""
    if not section:
        return []
    src = section["source"]
    eff = []
    if src.get("mbu") is not None:
        eff.append(f"decode {format_bytes(src['decode_step_bytes'])}/step at MBU {src['mbu']:.1%} "
                   f"({min(src['mbu_range']):.1%} - {max(src['mbu_range']):.1%})")
    if src.get("mfu") is not None:
        eff.append(f"prefill {src['prefill_flops'] / 1e12:.3g} TFLOP at MFU {src['mfu']:.1%} "
                   f"({min(src['mfu_range']):.1%} - {max(src['mfu_range']):.1%})")
    peaks = src.get("peak_source") or "the report's peaks"
    lines = [f"projection to other GPUs (projected, not measured): {section['method']}",
             f"projection from: {'; '.join(eff)} of {src['device_name']}'s peaks ({peaks})",
             "projection assumes: " + "; ".join(section["assumptions"])]
    ranges = [f"{name} from {src[key]}" for name, key in (("TPOT", "tpot_range_from"), ("TTFT", "ttft_range_from"))
              if src.get(key) and src.get(key.replace("range_from", "ms_range"))]
    if ranges:
        lines.append("projection range: the efficiency of the fastest and slowest measured case (" + "; ".join(ranges)
                     + ")")
    if src.get("needed_bytes") is not None:
        lines.append(f"projection memory: needs {format_bytes(src['needed_bytes'])} ({src['needed_from']}), against "
                     "each card's datasheet memory")
    for row in section["targets"]:
        if row["fits"] is False:
            lines.append(f"{row['card']}: {row['status']}")
        for note in row["notes"]:
            lines.append(f"{row['card']}: {note}")
    return lines + [f"projection: {n}" for n in section.get("notes") or []]


def projection_text(section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    header, rows = projection_table(section)
    return ["projected to other GPUs (projections from this measurement, not measurements):",
            text_table(header, rows), *projection_lines(section)]


def projection_html(section: dict[str, Any] | None) -> str:
    import html

    if not section:
        return ""
    header, rows = projection_table(section)
    table = html_table(header, rows, caption="projected to other GPUs (projections from this measurement, "
                                             "not measurements)")
    return table + "".join(f"<div>{html.escape(x)}</div>" for x in projection_lines(section))


def projection_columns(row: dict[str, Any]) -> dict[str, Any]:
    """One card's projection as DataFrame columns (numbers, the unit in the name)."""
    out = {"card": row["card"], "projected": True, "status": row["status"], "fits": row["fits"],
           "needed_bytes": row["needed_bytes"], "memory_bytes": row["memory_bytes"]}
    for key in ("tpot_ms", "ttft_ms", "ttlt_ms", "tokens_per_s"):
        out[f"projected_{key}"] = row[key]
        rng = row[f"{key}_range"] or [None, None]
        out[f"projected_{key}_low"], out[f"projected_{key}_high"] = rng
    return out


# -- the report ------------------------------------------------------------------------------------
class ProjectionReport(DataReport):
    """A measured latency report projected to other GPUs: ``source`` (what was measured, its MBU/MFU and
    their range), ``targets`` (one row per card), ``method``, ``assumptions``, ``notes``."""

    kind = "projection"
    schema = {"source": OBJECT, "targets": OBJECTS, "assumptions": TEXTS}


    def _payload(self) -> dict[str, Any]:
        return dict(self.data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProjectionReport":
        return cls({k: v for k, v in data.items() if k not in ENVELOPE_KEYS or k in ("label", "notes")})

    def card(self, name: str) -> dict[str, Any]:
        """The row of one card (matched like ``--project`` names)."""
        want = find_card(name).name
        return next(row for row in self.data["targets"] if row["card"] == want)

    def headline_figures(self) -> dict[str, str]:
        return {f"TPOT on {row['card']} (projected)": _t(row["tpot_ms"])
                for row in self.data["targets"] if row.get("tpot_ms") is not None}

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        src = data["source"]
        return [{"label": data.get("label"), "model": src.get("model"), "measured_on": src["device_name"],
                 "batch": src["batch"], "prompt_len": src["prompt_len"], "gen_len": src["gen_len"],
                 "mbu": src.get("mbu"), "mfu": src.get("mfu"), **projection_columns(row)} for row in data["targets"]]

    def title(self) -> str:
        s = self.data["source"]
        label = f"{self.data['label']} · " if self.data.get("label") else ""
        return (f"{label}{s.get('model')} measured on {s['device_name']} · batch {s['batch']} · prompt "
                f"{s['prompt_len']} · gen {s['gen_len']} -> {', '.join(r['card'] for r in self.data['targets'])}")

    def to_text(self) -> str:
        header, rows = projection_table(self.data)
        return "\n".join(["elana projection: " + self.title(), text_table(header, rows), *projection_lines(self.data)])

    def _tables_html(self) -> str:
        import html

        header, rows = projection_table(self.data)
        body = html_table(header, rows, caption="elana projection (projected, not measured): " + self.title())
        return body + "".join(f"<div>{html.escape(x)}</div>" for x in projection_lines(self.data))

    def to_html(self) -> str:
        from ..core.display import figure_to_html, html_block

        try:
            fig = figure_to_html(self.figure(), alt="projected TPOT per GPU")
        except ImportError:  # matplotlib missing: tables only
            fig = ""
        return html_block("projection", self._tables_html() + fig)

    def widget(self):
        from ..core.display import figure_to_widget, html_widget, report_view

        return report_view("projection", [html_widget(self._tables_html()), figure_to_widget(self.figure())])

    def figure(self):
        """Measured and projected TPOT (and TTFT) per card, the range as whiskers."""
        from matplotlib.figure import Figure

        src = self.data["source"]
        panels = [(key, title) for key, title in (("tpot_ms", "TPOT (decode step)"), ("ttft_ms", "TTFT (prefill)"))
                  if src.get(key) is not None and any(r.get(key) is not None for r in self.data["targets"])]
        fig = Figure(figsize=(4.3 * max(1, len(panels)), 0.9 + 0.35 * (1 + len(self.data["targets"]))))
        axes = fig.subplots(1, max(1, len(panels)), squeeze=False).ravel()
        for ax, (key, title) in zip(axes, panels):
            names = [f"{src['card'] or src['device_name']} (measured)"]
            vals, lows, highs, colors = [src[key]], [src[f"{key}_range"][0]], [src[f"{key}_range"][1]], ["#4C72B0"]
            for row in self.data["targets"]:
                if row.get(key) is None:
                    continue
                names.append(row["card"])
                vals.append(row[key])
                lows.append(row[f"{key}_range"][0])
                highs.append(row[f"{key}_range"][1])
                colors.append("#B0B0B0")
            y = list(range(len(names)))[::-1]
            err = [[v - lo for v, lo in zip(vals, lows)], [hi - v for v, hi in zip(vals, highs)]]
            ax.barh(y, vals, color=colors, xerr=err, capsize=3, hatch=None)
            ax.set_yticks(y, names, fontsize=8)
            ax.set_xlabel("ms (grey: projected, not measured)", fontsize=8)
            ax.set_title(title, fontsize=9, loc="left")
            ax.tick_params(labelsize=8)
            ax.spines[["top", "right"]].set_visible(False)
        if not panels:
            axes[0].text(0.5, 0.5, "nothing projected", ha="center", va="center", transform=axes[0].transAxes)
            axes[0].set_axis_off()
        fig.tight_layout()
        return fig


def project(report: Any, targets, *, peak_bw: float | None = None, peak_flops: float | None = None,
            label: str | None = None) -> ProjectionReport:
    """Project a latency report (a ``LatencyReport``, its ``to_dict()`` or a saved file) to the GPUs ``targets``
    (names from the peaks table: "H100", "L4", "Jetson AGX Orin"). ``peak_bw`` / ``peak_flops``: the peaks
    of the device it ran on where the report has none. ``ProjectionError`` (one line) for an unknown card or a
    report without MBU/MFU."""
    data = _report_dict(report)
    section = projection_section(data, targets, peak_bw=peak_bw, peak_flops=peak_flops)
    rep = ProjectionReport({"label": label if label is not None else data.get("label"), **section})
    env = Envelope.from_dict(data) if "created" in data else Envelope()
    env.settings = {"targets": [row["asked"] for row in section["targets"]], "peak_bw": peak_bw,
                    "peak_flops": peak_flops, "measured_created": data.get("created")}
    rep.envelope = Envelope(settings=env.settings, fingerprint=env.fingerprint, environment=env.environment)
    return rep


def attach_projection(report: Any, targets, *, peak_bw: float | None = None, peak_flops: float | None = None):
    """Add the ``projection`` section to a LatencyReport (shown in its text, HTML and widget); returns it.
    A report that can't be projected gets a note saying why instead (the measurement is kept)."""
    try:
        report.extra["projection"] = projection_section(report, targets, peak_bw=peak_bw, peak_flops=peak_flops)
    except ProjectionError as exc:
        report.notes.append(f"no projection: {exc}")
    return report
