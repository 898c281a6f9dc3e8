"""LatencyReport: TTFT / TPOT / TTLT statistics, energy per phase, roofline, and its views."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from ..core.conditions import rounds_line
from ..core.cost import cost_columns, cost_lines, format_usd
from ..core.report import Figure, Report, html_table, text_table
from ..core.schema import INT, LIST, NUMBERS, OBJECT, STATS, TEXT, optional
from ..core.units import column_formatter, energy_column, format_bytes, format_energy, format_time
from .projection import projection_html, projection_text


RSS_NOISE_BYTES = 1_000_000  # resident growth (or its part beyond the cache) below this is page noise on a CPU


def memory_lines(memory: dict[str, Any] | None) -> list[str]:
    """Per phase: the analytic model + cache, the measured peak, and the difference (activations, workspace)."""
    if not memory:
        return []
    lines = []
    for p in memory.get("phases", []):
        cache = p["analytic_cache_bytes"]
        cache_text = format_bytes(cache) if cache is not None else "unknown"
        if p["measured_kind"] == "allocated":
            extra = f"; reserved {format_bytes(p['reserved_peak_bytes'])}" if p.get("reserved_peak_bytes") else ""
            extra += f"; NVML used {format_bytes(p['nvml_used_bytes'])}" if p.get("nvml_used_bytes") else ""
            analytic = format_bytes(p["analytic_bytes"]) if p["analytic_bytes"] is not None else "unknown"
            lines.append(f"memory {p['phase']}: analytic model {format_bytes(p['analytic_model_bytes'])} + cache"
                         f" {cache_text} = {analytic}; measured peak {format_bytes(p['measured_peak_bytes'])}"
                         f" allocated{extra}; difference {_signed_bytes(p['activation_bytes'])}"
                         " (activations and workspace)")
        else:
            built = format_bytes(p["compared_bytes"]) if p["compared_bytes"] is not None else "unknown"
            diff = p["activation_bytes"]
            if diff is None or diff < RSS_NOISE_BYTES or p["measured_peak_bytes"] < RSS_NOISE_BYTES:
                # the heap reused memory it held already, or grew by page noise: nothing said of this phase
                continue
            why = "activations and workspace"
            lines.append(f"memory {p['phase']}: analytic model {format_bytes(p['analytic_model_bytes'])} (resident"
                         f" before) + cache {cache_text} at {p['context']} tokens; measured resident growth"
                         f" {format_bytes(p['measured_peak_bytes'])} vs cache built in the phase {built};"
                         f" difference {_signed_bytes(diff)} ({why})")
    if lines:
        lines.append(f"memory measured as: {memory['method']}")
    return lines


def _label_bars(ax, values: list[float], fmt: str) -> None:
    """Each bar's value above it, on a linear axis with head room: a short bar (TPOT beside TTLT) still
    reads, where a log axis drew it as a sliver whose height meant nothing."""
    for patch, value in zip(ax.patches, values):
        ax.annotate(fmt.format(value), (patch.get_x() + patch.get_width() / 2, patch.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylim(0, max(values) * 1.18 if values and max(values) > 0 else 1)


def _signed_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    return ("-" if n < 0 else "") + format_bytes(abs(n))


# -- the report ------------------------------------------------------------------------------------
def _ms(stats: dict) -> dict:
    return {k: (v * 1e3 if isinstance(v, float) else v) for k, v in stats.items()}


_SAMPLE_KEYS = {"ttft": "ttft_samples_ms", "tpot": "tpot_samples_ms", "ttlt": "ttlt_samples_ms"}


@dataclass(repr=False, eq=False)  # repr=False: IPython then uses Report._repr_pretty_
class LatencyReport(Report):
    """TTFT / TPOT / TTLT of one configuration: statistics and raw samples (ms), energy, roofline, notes.

    ``ttft_ms``/``tpot_ms``/``ttlt_ms`` are summaries (``n, mean, median, std, p90, p99, ci95_low,
    ci95_high``); the ``*_samples_ms`` lists are every timed prefill, decode step and request, kept
    so that a saved report can still be compared (``%elana_compare``). ``rounds``: in a paired
    measurement, the order in which the models ran (labels, one per round), else empty.
    """

    kind = "latency"

    @classmethod
    def comparison_figures(cls, d: dict[str, Any]) -> dict[str, Figure]:
        out: dict[str, Figure] = {}
        for name, key in (("TTFT", "ttft"), ("TPOT", "tpot"), ("TTLT", "ttlt")):
            med = (d.get(f"{key}_ms") or {}).get("median")
            samples = d.get(f"{key}_samples_ms")
            if med is not None:
                out[name] = Figure(med / 1e3, "s", list(samples or []), (d.get("round_sizes") or {}).get(key))
        e, r = d.get("energy") or {}, d.get("roofline") or {}
        for name, key in (("J/prompt", "j_per_prompt"), ("J/token", "j_per_token"), ("J/request", "j_per_request")):
            out[name] = Figure(e.get(key), "J")
        out["tokens/s"] = Figure(e.get("tokens_per_s"), "1/s", derived_from="1/TPOT", better="higher")
        out["tokens/J"] = Figure(e.get("tokens_per_j"), "1/J", better="higher")
        out["MBU"] = Figure(r.get("mbu"), "share", derived_from="1/TPOT", better="higher")
        out["decode bytes/step"] = Figure(r.get("decode_step_bytes"), "bytes")
        c = d.get("cost") or {}
        if c:
            # GPU time per token: proportional to the timed figure it came from, whose interval it takes
            out["cost per 1M tokens"] = Figure(c.get("usd_per_1m_tokens"), "$",
                                               derived_from="TTLT" if c.get("basis") == "request" else "TPOT")
            out["energy cost per 1M tokens"] = Figure(c.get("energy_usd_per_1m_tokens"), "$")
            out["CO2e per 1M tokens"] = Figure(c.get("gco2_per_1m_tokens"), "g")
        return out
    schema = {"model": TEXT, "device": TEXT, "engine": TEXT, "batch": INT, "prompt_len": INT, "gen_len": INT,
              "phases": LIST, "ttft_ms": STATS, "tpot_ms": STATS, "ttlt_ms": STATS, "energy": optional(OBJECT),
              "roofline": optional(OBJECT), "ttft_samples_ms": optional(NUMBERS), "tpot_samples_ms": optional(NUMBERS),
              "ttlt_samples_ms": optional(NUMBERS), "rounds": optional(LIST),
              "rounds_conditions": optional(OBJECT)}

    label: str | None
    model: str
    device: str
    device_name: str | None
    engine: str
    batch: int
    prompt_len: int
    gen_len: int
    phases: list[str]
    ttft_ms: dict[str, Any]
    tpot_ms: dict[str, Any]
    ttlt_ms: dict[str, Any]
    cuda_graph: bool = False
    graph_check_max_abs_diff: float | None = None
    graph_check_rel_err: float | None = None
    tpot_from_ttlt_ms: float | None = None
    ttlt_split_ms: dict[str, float] | None = None
    stopped: dict[str, str] = field(default_factory=dict)
    roofline: dict[str, Any] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ttft_samples_ms: list[float] = field(default_factory=list)
    tpot_samples_ms: list[float] = field(default_factory=list)
    ttlt_samples_ms: list[float] = field(default_factory=list)
    rounds: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. devices, peak_memory; replicas: ranks, ngpus

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra") or {}
        if name in extra:
            return extra[name]
        raise AttributeError(name)

    @property
    def step_ms(self) -> list[float]:
        """Every decode step's latency (ms): the TPOT samples."""
        return self.tpot_samples_ms

    @property
    def data(self) -> dict[str, Any]:
        """The report's own figures as a dict (the payload of ``to_dict``)."""
        return self._payload()

    def samples(self, phase: str) -> list[float]:
        """The raw samples (ms) of ``phase`` (ttft, tpot or ttlt)."""
        return getattr(self, _SAMPLE_KEYS[phase])

    def _payload(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyReport":
        """The report a ``to_dict()`` describes; keys that are not fields (nor the envelope's) go to ``extra``."""
        from ..core.envelope import ENVELOPE_KEYS

        names = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["extra"] = {k: v for k, v in data.items() if k not in names and k not in ENVELOPE_KEYS}
        kwargs.setdefault("notes", list(data.get("notes") or []))
        return cls(**kwargs)

    def headline_figures(self) -> dict[str, str]:
        out = {}
        for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("TTLT", "ttlt_ms")):
            med = (getattr(self, key) or {}).get("median")
            if med is not None:
                out[name] = format_time(med / 1e3, digits=4)
        if (self.energy or {}).get("j_per_token") is not None:
            out["J/token"] = format_energy(self.energy["j_per_token"])
        usd = (self.extra.get("cost") or {}).get("usd_per_1m_tokens")
        if usd is not None:
            out["$/1M tokens"] = format_usd(usd)
        return out

    def cost_at(self, usd_per_gpu_hour: float | None = None, usd_per_kwh: float | None = None,
                gco2_per_kwh: float | None = None) -> dict[str, Any] | None:
        """This measurement's cost at other rates (the figures ``cost`` holds, without measuring again):
        ``rep.cost_at(usd_per_gpu_hour=2.5)["usd_per_1m_tokens"]``. None when no rate is given."""
        from ..core.cost import check_rate, cost_section

        rates = {name: check_rate(name, value) for name, value in (("usd_per_gpu_hour", usd_per_gpu_hour),
                 ("usd_per_kwh", usd_per_kwh), ("gco2_per_kwh", gco2_per_kwh))}
        per_seq = (self.energy or {}).get("per_sequence") or {}
        gpus = sum(str(d).startswith("cuda") for d in self.extra.get("devices") or []) or 1

        def median_s(stats: dict | None) -> float | None:
            med = (stats or {}).get("median")
            return None if med is None else med / 1e3

        tpot_s = median_s(self.tpot_ms) or (self.tpot_from_ttlt_ms / 1e3 if self.tpot_from_ttlt_ms else None)
        return cost_section(rates, tpot_s=tpot_s, ttlt_s=median_s(self.ttlt_ms), batch=self.batch,
                            gen_len=self.gen_len, gpus=gpus, j_per_token_seq=per_seq.get("j_per_token"),
                            j_per_request_seq=per_seq.get("j_per_request"))

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for phase in ("ttft_ms", "tpot_ms", "ttlt_ms"):
            stats = data.get(phase) or {}
            if stats.get("n"):
                rows.append({"label": data.get("label"), "phase": phase[:4], "batch": data["batch"],
                             "prompt_len": data["prompt_len"], "gen_len": data["gen_len"],
                             "engine": data["engine"], **{f"{k}_ms" if k != "n" else k: v for k, v in stats.items()},
                             **cost_columns(data.get("cost"))})
        return rows

    # rows shared by the text and HTML tables
    def _table(self) -> tuple[list[str], list[list[str]]]:
        d, e, r = self.data, self.data.get("energy") or {}, self.data.get("roofline") or {}
        per_seq = e.get("per_sequence") or {}
        header = ["phase", "n", "median", "mean", "p90", "p99", "floor", "energy/batch", "energy/seq"]

        spec = [("TTFT (prefill)", "ttft_ms", "ttft_floor_ms", "j_per_prompt"),
                ("TPOT (decode step)", "tpot_ms", "tpot_floor_ms", "j_per_token"),
                ("TTLT (request)", "ttlt_ms", "ttlt_floor_ms", "j_per_request")]
        measured = [(t, d[k], fl, ek) for t, k, fl, ek in spec if (d.get(k) or {}).get("n")]
        times = [x for _, st, fl, _ in measured for x in (st["median"], st["p99"], r.get(fl))]
        times.append(d.get("tpot_from_ttlt_ms"))
        f = column_formatter([None if v is None else v / 1e3 for v in times])  # one time unit for the table

        def ms(v):
            return f(None if v is None else v / 1e3)

        joules = energy_column([x for _, _, _, ek in measured for x in (e.get(ek), per_seq.get(ek))])
        rows = []
        for title, st, floor, ekey in measured:
            rows.append([title, st["n"], ms(st["median"]), ms(st["mean"]), ms(st["p90"]), ms(st["p99"]),
                         ms(r.get(floor)), joules(e.get(ekey)), joules(per_seq.get(ekey))])
        if d.get("tpot_from_ttlt_ms") is not None:
            rows.append(["TPOT = (TTLT-TTFT)/(G-1)", "", ms(d["tpot_from_ttlt_ms"]), "", "", "", "", "", ""])
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
                         f" + cache {format_bytes(r['kv_read_bytes'])}) -> {format_bytes(bw)}/s{mbu}")
        if r.get("achieved_prefill_flops_per_s") is not None:
            mfu = f" = {r['mfu']:.0%} MFU of {r['peak_flops_per_s'] / 1e12:.0f} TFLOP/s" if r.get("mfu") is not None else ""
            lines.append(f"prefill: {r['prefill_flops'] / 1e12:.3g} TFLOP -> "
                         f"{r['achieved_prefill_flops_per_s'] / 1e12:.3g} TFLOP/s{mfu}")
        if r.get("peak_source"):
            lines.append(f"peaks: {r['peak_source']}")
        if e.get("tokens_per_s") is not None:
            lines.append(f"decode throughput: {e['tokens_per_s']:.4g} tokens/s"
                         + (f", {e['tokens_per_j']:.4g} tokens/J" if e.get("tokens_per_j") else ""))
        lines += cost_lines(d.get("cost"))
        lines += [x for x in [rounds_line(d.get("rounds_conditions"))] if x]
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
        lines += memory_lines(d.get("memory"))
        c = d.get("compile") or {}
        if c:
            took = f", compiled in {c['compile_s']:.1f} s before the measurement" if c.get("compile_s") else ""
            lines.append(f"compile: {c['requested']} requested, variant {c['variant']}{took}; the engine that ran:"
                         f" {d['engine']}")
        check = d.get("prefill_check") or {}
        if check.get("rel_err") is not None:
            lines.append(f"prefill: {(d.get('engines') or {}).get('prefill')}, checked against an eager prefill "
                         f"(relative logit error {check['rel_err']:.2g}, same greedy token)")
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
        prefill = (d.get("engines") or {}).get("prefill")
        engines = f"{prefill} prefill · {d['engine']} decode" if prefill else f"{d['engine']} decode"
        return (f"{label}{d['model']} on {where} · batch {d['batch']} · prompt {d['prompt_len']}"
                f" · gen {d['gen_len']} · {engines}")

    def to_text(self) -> str:
        header, rows = self._table()
        parts = ["elana latency: " + self.title(), text_table(header, rows) if rows else "(no phase measured)"]
        parts += self._summary_lines()
        parts += projection_text(self.data.get("projection"))
        parts += [f"note: {n}" for n in self.data.get("notes", [])]
        return "\n".join(parts)

    def _tables_html(self) -> str:
        import html

        header, rows = self._table()
        body = html_table(header, rows, caption="elana latency: " + self.title())
        from ..core.display import notes_html

        extra = "".join(f"<div>{html.escape(x)}</div>" for x in self._summary_lines())
        return body + extra + projection_html(self.data.get("projection")) + notes_html(self.data.get("notes", []))

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
        _label_bars(ax, meds, "{:.3g} ms")
        ax.legend(fontsize=7, frameon=False)
        ax.set_ylabel("latency (ms)", fontsize=9)
        ax.set_title("latency per phase", fontsize=9, loc="left")

    @staticmethod
    def _energy_panel(ax, vals) -> None:
        ax.bar([v[0] for v in vals], [v[1] for v in vals], color="#DD8452", width=0.6)
        _label_bars(ax, [v[1] for v in vals], "{:.3g} J")
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
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("inter-token latency distribution", fontsize=9, loc="left")

    @staticmethod
    def _roofline_panel(ax, bars) -> None:
        ax.barh([b[0] for b in bars], [b[1] * 100 for b in bars], color="#8172B3")
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of peak", fontsize=9)
        ax.set_title("roofline: share of the hardware's peak", fontsize=9, loc="left")
