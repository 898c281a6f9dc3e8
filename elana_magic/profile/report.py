"""ProfileReport: what a profile found, as text, HTML, a widget and a timeline."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from ..core.report import Figure, Report, html_table, text_table
from ..core.schema import OBJECT, OBJECTS, TEXT, optional
from ..core.units import format_time
from .trace import ParsedTrace

PERFETTO_URL = "https://ui.perfetto.dev"
PERFETTO_NOTE = f"open it in {PERFETTO_URL} (Open trace file; it stays on your machine)"


# -- the report ----------------------------------------------------------------------------------------

@dataclass(repr=False, eq=False)  # repr=False: IPython then uses Report._repr_pretty_
class ProfileReport(Report):
    """What a profile found: where the trace went, the kernel/op tables, breakdown, busy/idle, step times."""

    kind = "profile"

    @classmethod
    def comparison_figures(cls, d: dict[str, Any]) -> dict[str, Figure]:
        basis = "GPU" if "GPU" in str(d.get("breakdown_basis", "")) or (d.get("busy_idle") is not None) else "CPU"
        out = {f"{basis} time: {r['kind']}": Figure(r["time_us"] / 1e6, "s") for r in d.get("breakdown") or []}
        total = sum(r["time_us"] for r in d.get("breakdown") or [])
        if total:
            out[f"{basis} time: total"] = Figure(total / 1e6, "s")
        st = d.get("step_time") or {}
        if st.get("gpu_mean_us") is not None:
            out["GPU time per decode step"] = Figure(st["gpu_mean_us"] / 1e6, "s")
        return out
    schema = {"trace_path": TEXT, "kernel_table": optional(OBJECTS), "op_table": optional(OBJECTS),
              "breakdown": optional(OBJECTS), "steps": optional(OBJECTS), "counts": optional(OBJECT),
              "step_time": optional(OBJECT)}

    trace_path: str
    label: str
    phase: str | None = None           # ttft / tpot / ttlt, or None for a block of code
    engine: str | None = None          # "cuda-graph" / "eager" for phases
    device: str | None = None          # "cuda:0", "cpu"; None: read from the trace
    settings: dict[str, Any] = field(default_factory=dict)
    kernel_table: list[dict] = field(default_factory=list)
    op_table: list[dict] = field(default_factory=list)
    breakdown: list[dict] = field(default_factory=list)
    breakdown_basis: str = ""
    busy_idle: dict[str, Any] | None = None
    launch_gaps: dict[str, Any] | None = None
    steps: list[dict] = field(default_factory=list)
    step_time: dict[str, Any] | None = None
    overhead: dict[str, Any] | None = None
    hta: dict[str, Any] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _trace: ParsedTrace | None = field(default=None, repr=False)
    _png: bytes | None = field(default=None, repr=False)

    # -- data --
    def _payload(self) -> dict[str, Any]:
        return {
            "trace_path": self.trace_path, "label": self.label, "phase": self.phase, "engine": self.engine,
            "device": self.device, **self.settings,
            "kernel_table": self.kernel_table, "op_table": self.op_table,
            "breakdown": self.breakdown, "breakdown_basis": self.breakdown_basis,
            "busy_idle": self.busy_idle, "launch_gaps": self.launch_gaps,
            "steps": self.steps, "step_time": self.step_time, "overhead": self.overhead,
            "hta": self.hta, "counts": self.counts, "notes": self.notes,
        }

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return data["kernel_table"] or data["op_table"] or super()._dataframe_rows(data)

    _SETTING_KEYS = ("batch", "prompt_len", "gen_len", "steps")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProfileReport":
        names = {f.name for f in fields(cls)} - {"settings", "_trace", "_png"}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["settings"] = {k: data[k] for k in cls._SETTING_KEYS if k in data}
        return cls(**kwargs)

    def headline_figures(self) -> dict[str, str]:
        out = {}
        st = self.step_time or {}
        if st.get("gpu_mean_us") is not None:
            out["GPU step"] = _t(st["gpu_mean_us"])
        total = sum(r["time_us"] for r in self.breakdown)
        if total:
            out["time"] = _t(total)
        out["kernels"] = str(self.counts.get("gpu", 0))
        return out

    def figure(self):
        """Time by kernel kind (GPU kernels, or CPU ops on a CPU-only trace) as horizontal bars."""
        from matplotlib.figure import Figure

        rows = [r for r in self.breakdown if r["time_us"] > 0]
        fig = Figure(figsize=(6.5, 0.45 * max(2, len(rows)) + 1.0))
        ax = fig.add_subplot()
        if rows:
            ax.barh([r["kind"] for r in rows][::-1], [r["time_us"] / 1e3 for r in rows][::-1], color="#4C72B0")
            ax.set_xlabel("time (ms)")
        else:
            ax.text(0.5, 0.5, "no kernel time in the trace", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        ax.set_title(f"{self.label}: time by kind ({self.breakdown_basis})", fontsize=9)
        fig.tight_layout()
        return fig

    @property
    def trace(self) -> ParsedTrace:
        """The parsed trace (read back from ``trace_path`` when needed)."""
        if self._trace is None:
            self._trace = ParsedTrace.load(self.trace_path)
        return self._trace

    def timeline(self, ax=None, **kwargs):
        """Draw the kernel (or CPU op) timeline; returns the matplotlib Figure."""
        from .timeline import draw_timeline

        return draw_timeline(self.trace, ax=ax, spans=self.steps, **kwargs)

    def timeline_png(self) -> bytes:
        if self._png is None:
            from .timeline import figure_png

            self._png = figure_png(self.timeline(width=VIEW_WIDTH_IN))
        return self._png

    # -- views --
    def headline(self) -> list[str]:
        what = f": phase {self.phase}" if self.phase else ""
        s = self.settings
        extra = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.items() if k in ("batch", "prompt_len", "gen_len", "steps"))
        engine = f", engine {self.engine}" if self.engine else ""
        lines = [f"elana profile '{self.label}'{what} on {self.device}{engine}" + (f" ({extra})" if extra else "")]
        lines.append(f"trace: {shown_path(self.trace_path)}")
        lines.append(f"  {PERFETTO_NOTE}")
        c = self.counts
        lines.append(f"events: {c.get('events', 0)} ({c.get('gpu', 0)} GPU kernels/copies, {c.get('cpu_ops', 0)} CPU ops)")
        b = self.busy_idle
        if b and b.get("busy_share") is not None:
            lines.append(f"GPU busy {b['busy_share']:.1%}, idle {b['idle_share']:.1%} of {_t(b['window_us'])} "
                         "(first to last GPU activity)")
        g = self.launch_gaps
        if g and g["gaps"]["n"]:
            gg = g["gaps"]
            lines.append(f"gaps between GPU work: {gg['n']}, median {_t(gg['median_us'])}, p90 {_t(gg['p90_us'])}, "
                         f"max {_t(gg['max_us'])}, total {_t(gg['total_us'])}")
        if g and g["launch_delay"]["n"]:
            d = g["launch_delay"]
            lines.append(f"launch delay (kernel start - launch call): median {_t(d['median_us'])}, p90 {_t(d['p90_us'])}")
        st = self.step_time
        if st:
            if st.get("gpu_mean_us") is not None:
                lines.append(f"decode step from GPU kernels: {_t(st['gpu_mean_us'])} per step over {st['steps']} steps "
                             f"(median period {_t(st['gpu_median_period_us'])}, median busy span {_t(st['gpu_median_span_us'])})")
            else:
                lines.append(f"decode step (CPU annotations): mean {_t(st['cpu_mean_us'])} over {st['steps']} steps")
        o = self.overhead
        if o and o.get("overhead") is not None:
            lines.append(f"profiler overhead: {_t(o['profiled_s'] * 1e6)} with vs {_t(o['unprofiled_s'] * 1e6)} without "
                         f"({o['overhead']:+.1%} wall time)")
        return lines

    def _tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        tables = []
        if self.breakdown:
            tables.append((f"Breakdown by kind ({self.breakdown_basis})", ["kind", "time", "share"],
                           [[r["kind"], _t(r["time_us"]), f"{r['share']:.1%}"] for r in self.breakdown if r["time_us"] > 0]))
        if self.kernel_table:
            tables.append(("Top GPU kernels", ["kernel", "kind", "count", "total", "mean", "GPU share"],
                           [[_short(r["name"]), r["kind"], r["count"], _t(r["total_us"]), _t(r["mean_us"]), f"{r['share']:.1%}"]
                            for r in self.kernel_table]))
        if self.op_table:
            tables.append(("Top CPU ops (by self time)", ["op", "kind", "count", "total", "self", "mean", "self share"],
                           [[_short(r["name"]), r["kind"], r["count"], _t(r["total_us"]), _t(r["self_us"]),
                             _t(r["mean_us"]), f"{r['share']:.1%}"] for r in self.op_table]))
        if self.steps:
            rows = [[r["name"], _t(r["cpu_us"]), _t(r["gpu_span_us"]), _t(r["gpu_busy_us"]), r["kernels"]]
                    for r in self.steps[:_MAX_STEP_ROWS]]
            if len(self.steps) > _MAX_STEP_ROWS:
                rows.append([f"... {len(self.steps) - _MAX_STEP_ROWS} more (report.steps)", "", "", "", ""])
            tables.append(("Annotated phases", ["annotation", "CPU", "GPU span", "GPU busy", "kernels"], rows))
        if self.hta:
            for key, title in (("kernel_type_breakdown", "HTA kernel type breakdown"), ("idle_time", "HTA idle time")):
                rows = self.hta.get(key) or []
                if rows:
                    keys = list(rows[0].keys())
                    header = [f"{k} (µs)" if k in _HTA_MICROSECONDS else k for k in keys]
                    tables.append((title, header, [[_fmt(r[k]) for k in keys] for r in rows]))
        return tables

    def to_text(self) -> str:
        parts = ["\n".join(self.headline())]
        for title, header, rows in self._tables():
            parts.append(f"{title}\n{text_table(header, rows)}")
        if self.notes:
            parts.append("\n".join(f"note: {n}" for n in self.notes))
        return "\n\n".join(parts)

    def _header_html(self) -> str:
        import html

        lines = self.headline()
        body = "<br>".join(html.escape(x) for x in lines[:1])
        path = html.escape(shown_path(self.trace_path))
        rest = "<br>".join(html.escape(x) for x in lines[3:])
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<div><b>{body}</b><br>trace: <code>{path}</code> &mdash; open it in "
                f"<a href='{PERFETTO_URL}' target='_blank'>ui.perfetto.dev</a> (Open trace file; it stays on your machine)"
                f"<br>{rest}{'<ul>' + notes + '</ul>' if notes else ''}</div>")

    def to_html(self) -> str:
        from ..core.display import html_block, png_img_html

        parts = [self._header_html()]
        try:
            parts.append(png_img_html(self.timeline_png(), alt="kernel timeline"))
        except ImportError:  # matplotlib missing: tables only
            pass
        parts += [html_table(h, r, caption=t) for t, h, r in self._tables()]
        return html_block("profile", "\n".join(parts))

    def widget(self):
        """The notebook view: header, the timeline (zoom buttons that work without a kernel), and the tables in tabs."""
        import ipywidgets as widgets

        from ..core.display import html_widget, report_view
        from .timeline import timeline_widget

        tables = self._tables()
        tabs = widgets.Tab(children=[html_widget(html_table(h, r, caption=t)) for t, h, r in tables])
        for i, (title, _, _) in enumerate(tables):
            tabs.set_title(i, _tab_title(title))
        return report_view("profile", [html_widget(self._header_html()),
                                       timeline_widget(self.trace, spans=self.steps, width=VIEW_WIDTH_IN), tabs])


def shown_path(path: str) -> str:
    """``path`` as a notebook shows it: relative to the working folder when inside it (a saved notebook
    then holds no machine's absolute folders), else as it is. ``trace_path`` itself stays absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith(os.pardir) else rel


# Tab titles: the table's name without its parenthesis (the full title is the table's caption).
def _tab_title(title: str) -> str:
    return title.split(" (", 1)[0]


_MAX_STEP_ROWS = 12
VIEW_WIDTH_IN = 8.0  # the timeline in the notebook views: ~950 px at 110 dpi with its legend, native size
_HTA_MICROSECONDS = {"sum", "idle_time", "max", "min", "mean", "std"}


def _t(us: float | None) -> str:
    return format_time(None if us is None else us * 1e-6)


def _short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else _short(str(v), 50)
