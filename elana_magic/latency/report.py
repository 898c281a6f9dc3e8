"""LatencyReport: TTFT / TPOT / TTLT statistics, energy per phase, roofline, and its views."""

from __future__ import annotations

import math
from typing import Any

from ..core.report import Report, html_table, text_table
from ..core.units import format_bytes, format_energy, format_time


# -- the report ------------------------------------------------------------------------------------
def _ms(stats: dict) -> dict:
    return {k: (v * 1e3 if isinstance(v, float) else v) for k, v in stats.items()}


class LatencyReport(Report):
    """TTFT / TPOT / TTLT statistics (ms), energy per phase, roofline, notes."""

    def __init__(self, data: dict[str, Any], step_ms: list[float]):
        self.data = data
        self.step_ms = step_ms

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("data", {})
        if name in data:
            return data[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        return {**self.data, "step_latencies_ms": list(self.step_ms)}

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for phase in ("ttft_ms", "tpot_ms", "ttlt_ms"):
            stats = data.get(phase) or {}
            if stats.get("n"):
                rows.append({"label": data.get("label"), "phase": phase[:4], "batch": data["batch"],
                             "prompt_len": data["prompt_len"], "gen_len": data["gen_len"],
                             "engine": data["engine"], **{f"{k}_ms" if k != "n" else k: v for k, v in stats.items()}})
        return rows

    # rows shared by the text and HTML tables
    def _table(self) -> tuple[list[str], list[list[str]]]:
        d, e, r = self.data, self.data.get("energy") or {}, self.data.get("roofline") or {}
        per_seq = e.get("per_sequence") or {}
        header = ["phase", "n", "median", "mean", "p90", "p99", "floor", "energy/batch", "energy/seq"]

        def f(v):
            return format_time(None if v is None else v / 1e3, digits=4)

        rows = []
        spec = [("TTFT (prefill)", "ttft_ms", "ttft_floor_ms", "j_per_prompt"),
                ("TPOT (decode step)", "tpot_ms", "tpot_floor_ms", "j_per_token"),
                ("TTLT (request)", "ttlt_ms", "ttlt_floor_ms", "j_per_request")]
        for title, key, floor, ekey in spec:
            s = d.get(key) or {}
            if not s.get("n"):
                continue
            rows.append([title, s["n"], f(s["median"]), f(s["mean"]), f(s["p90"]), f(s["p99"]),
                         f(r.get(floor)), format_energy(e.get(ekey)), format_energy(per_seq.get(ekey))])
        if d.get("tpot_from_ttlt_ms") is not None:
            rows.append(["TPOT = (TTLT-TTFT)/(G-1)", "", f(d["tpot_from_ttlt_ms"]), "", "", "", "", "", ""])
        # columns with nothing known (no floor without a peak, no energy without a sensor) are left out
        keep = [i for i in range(len(header)) if i < 6 or any(row[i] not in ("", "-") for row in rows)]
        return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]

    def _summary_lines(self) -> list[str]:
        d, e, r = self.data, self.data.get("energy") or {}, self.data.get("roofline") or {}
        lines = []
        if r.get("mbu") is not None or r.get("achieved_bw_bytes_per_s") is not None:
            bw = r.get("achieved_bw_bytes_per_s")
            peak = r.get("peak_bw_bytes_per_s")
            mbu = f" = {r['mbu']:.0%} MBU of {format_bytes(peak)}/s" if r.get("mbu") is not None else ""
            lines.append(f"decode: {format_bytes(r['decode_step_bytes'])}/step (weights {format_bytes(r['weights_read_bytes'])}"
                         f" + KV {format_bytes(r['kv_read_bytes'])}) -> {format_bytes(bw)}/s{mbu}")
        if r.get("achieved_prefill_flops_per_s") is not None:
            mfu = f" = {r['mfu']:.0%} MFU of {r['peak_flops_per_s'] / 1e12:.0f} TFLOP/s" if r.get("mfu") is not None else ""
            lines.append(f"prefill: {r['prefill_flops'] / 1e12:.3g} TFLOP -> "
                         f"{r['achieved_prefill_flops_per_s'] / 1e12:.3g} TFLOP/s{mfu}")
        if r.get("peak_source"):
            lines.append(f"peaks: {r['peak_source']}")
        if e.get("tokens_per_s") is not None:
            lines.append(f"decode throughput: {e['tokens_per_s']:.4g} tokens/s"
                         + (f", {e['tokens_per_j']:.4g} tokens/J" if e.get("tokens_per_j") else ""))
        counter = e.get("request_split_counter_j") or {}
        if counter:
            lines.append(f"request energy from the phase counters: prefill {format_energy(counter['prefill'])}"
                         f" + decode {format_energy(counter['decode'])} = "
                         f"{format_energy(counter['prefill'] + counter['decode'])} (measured"
                         f" {format_energy(e.get('j_per_request'))} per request)")
        split = e.get("request_split_j") or {}
        if split.get("prefill") is not None:
            lines.append(f"request energy split (power timeline, coarse below ~0.1 s): prefill"
                         f" {format_energy(split['prefill'])}, decode {format_energy(split['decode'])}")
        if e.get("method"):
            idle = e.get("idle_power_w")
            lines.append(f"energy: {e['method']}" + (f"; idle {idle:.4g} W" if idle else ""))
        lines += self._device_lines()
        return lines

    def _device_lines(self) -> list[str]:
        """One line per GPU when there is more than one: energy share and peak memory per phase."""
        d, e = self.data, self.data.get("energy") or {}
        shares = {row["device"]: row for row in e.get("per_device") or []}
        peaks = d.get("peak_memory") or {}
        devices = [x for x in d.get("devices") or [] if x.startswith("cuda")]
        if len(devices) < 2 and len(shares) < 2:
            if len(peaks) == 1:
                (dev, row), = peaks.items()
                return [f"peak memory on {dev}: {format_bytes(row['max'])}"]
            return []
        lines = [f"devices: {', '.join(devices or list(shares))} (every one synchronized at each timed edge)"]
        for dev in devices or list(shares):
            parts = []
            row = shares.get(dev)
            if row is not None:
                figures = [f"{format_energy(row[k])}/{u}" for k, u in (("j_per_prompt", "prompt"), ("j_per_token", "token"),
                                                                         ("j_per_request", "request")) if row.get(k) is not None]
                share = f" ({row['share']:.0%} of the energy)" if row.get("share") is not None else ""
                parts.append(", ".join(figures) + share)
            peak = peaks.get(dev)
            if peak:
                per_phase = ", ".join(f"{k} {format_bytes(v)}" for k, v in peak.items() if k != "max")
                parts.append(f"peak memory {format_bytes(peak['max'])} ({per_phase})")
            lines.append(f"  {dev}: " + ("; ".join(parts) if parts else "not measured"))
        return lines

    def title(self) -> str:
        d = self.data
        label = f"{d['label']} · " if d.get("label") else ""
        gpus = [x for x in d.get("devices") or [] if x.startswith("cuda")]
        where = f"{len(gpus)} GPUs ({d['device_name']}, ...)" if len(gpus) > 1 else d["device_name"]
        return (f"{label}{d['model']} on {where} · batch {d['batch']} · prompt {d['prompt_len']}"
                f" · gen {d['gen_len']} · {d['engine']} decode")

    def to_text(self) -> str:
        header, rows = self._table()
        parts = ["elana latency: " + self.title(), text_table(header, rows) if rows else "(no phase measured)"]
        parts += self._summary_lines()
        parts += [f"note: {n}" for n in self.data.get("notes", [])]
        return "\n".join(parts)

    def _tables_html(self) -> str:
        import html

        header, rows = self._table()
        body = html_table(header, rows, caption="elana latency: " + self.title())
        extra = "".join(f"<div>{html.escape(x)}</div>" for x in self._summary_lines())
        notes = "".join(f"<div style='color:#555'>note: {html.escape(n)}</div>" for n in self.data.get("notes", []))
        return body + extra + notes

    def to_html(self) -> str:
        from ..core.display import figure_to_html, html_block

        try:
            fig = figure_to_html(self.figure(), alt="latency per phase")
        except ImportError:  # matplotlib missing: tables only
            fig = ""
        return html_block("latency", self._tables_html() + fig)

    def widget(self):
        from ..core.display import figure_to_widget, html_widget, report_view

        return report_view("latency", [html_widget(self._tables_html()), figure_to_widget(self.figure())])

    def figure(self):
        """Per-phase latency (with floors), energy per phase, the decode-step distribution and the
        roofline: each panel only when there is something to draw (a matplotlib Figure)."""
        from matplotlib.figure import Figure

        d, e, r = self.data, self.data.get("energy") or {}, self.data.get("roofline") or {}
        panels = []
        names, meds, floors = [], [], []
        for title, key, floor in (("TTFT", "ttft_ms", "ttft_floor_ms"), ("TPOT", "tpot_ms", "tpot_floor_ms"),
                                  ("TTLT", "ttlt_ms", "ttlt_floor_ms")):
            if (d.get(key) or {}).get("n"):
                names.append(title)
                meds.append(d[key]["median"])
                floors.append(r.get(floor))
        if names:
            panels.append(lambda ax: self._latency_panel(ax, names, meds, floors))
        per_seq = e.get("per_sequence") or {}
        ekeys = [("J/prompt", "j_per_prompt"), ("J/token", "j_per_token"), ("J/request", "j_per_request")]
        vals = [(n, per_seq.get(k)) for n, k in ekeys if per_seq.get(k) is not None]
        if vals:
            panels.append(lambda ax: self._energy_panel(ax, vals))
        if self.step_ms:
            panels.append(self._steps_panel)
        bars = [(name, r[key]) for name, key in (("decode MBU", "mbu"), ("prefill MFU", "mfu"),
                                                  ("decode MFU", "decode_mfu")) if r.get(key) is not None]
        if bars:
            panels.append(lambda ax: self._roofline_panel(ax, bars))
        cols = 2 if len(panels) > 1 else 1
        rows = max(1, math.ceil(len(panels) / cols))
        fig = Figure(figsize=(4.3 * cols, 2.9 * rows))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, draw in zip(axes, panels):
            draw(ax)
            ax.tick_params(labelsize=8)
            ax.spines[["top", "right"]].set_visible(False)
        for ax in axes[len(panels):]:
            ax.set_axis_off()
        if not panels:
            axes[0].text(0.5, 0.5, "no phase measured", ha="center", va="center", transform=axes[0].transAxes)
        fig.tight_layout()
        return fig

    @staticmethod
    def _latency_panel(ax, names, meds, floors) -> None:
        ax.bar(names, meds, color="#4C72B0", width=0.6, label="measured (median)")
        fl = [f if f is not None else math.nan for f in floors]
        if any(not math.isnan(f) for f in fl):
            ax.bar(names, fl, color="none", edgecolor="black", hatch="//", width=0.6, label="roofline floor")
        ax.set_yscale("log")
        ax.legend(fontsize=7, frameon=False)
        ax.set_ylabel("latency (ms)", fontsize=9)
        ax.set_title("latency per phase", fontsize=9, loc="left")

    @staticmethod
    def _energy_panel(ax, vals) -> None:
        ax.bar([v[0] for v in vals], [v[1] for v in vals], color="#DD8452", width=0.6)
        ax.set_yscale("log")
        ax.set_ylabel("J per sequence", fontsize=9)
        ax.set_title("energy per phase (per sequence)", fontsize=9, loc="left")

    def _steps_panel(self, ax) -> None:
        d, r = self.data, self.data.get("roofline") or {}
        ax.hist(self.step_ms, bins=min(60, max(10, len(self.step_ms) // 10)), color="#55A868")
        ax.axvline(d["tpot_ms"]["median"], color="black", linestyle="--", label="median")
        if r.get("tpot_floor_ms"):
            ax.axvline(r["tpot_floor_ms"], color="red", linestyle=":", label="floor")
        ax.legend(fontsize=7, frameon=False)
        ax.set_xlabel("decode step latency (ms)", fontsize=9)
        ax.set_ylabel("steps", fontsize=9)
        ax.set_title("inter-token latency distribution", fontsize=9, loc="left")

    @staticmethod
    def _roofline_panel(ax, bars) -> None:
        ax.barh([b[0] for b in bars], [b[1] * 100 for b in bars], color="#8172B3")
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of peak", fontsize=9)
        ax.set_title("roofline: share of the hardware's peak", fontsize=9, loc="left")
