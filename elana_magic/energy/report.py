"""EnergyReport: a window's joules, powers and timeline, as text, HTML, widget and dict."""

from __future__ import annotations

import html as _html
from dataclasses import dataclass, field
from typing import Any

from ..core.report import Figure, Report, html_table, text_table
from ..core.schema import INT, NUMBER, OBJECT, OBJECTS, optional
from ..core.units import format_energy, format_power, format_time
from .sampler import integrate


@dataclass
class DeviceTimeline:
    """One sensor's power samples (perf_counter s, W) and the factor that scales them to its energy."""

    name: str
    t: list[float]
    power_w: list[float]
    scale: float = 1.0
    counted_in_total: bool = True
    readings_t: list[float] = field(default_factory=list)   # the raw power readings around the window,
    readings_w: list[float] = field(default_factory=list)   # where ``t``/``power_w`` are derived steps


def _sum(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@dataclass(repr=False, eq=False)
class EnergyReport(Report):
    """What one energy window measured. Energy in J, power in W, times in perf_counter seconds."""

    kind = "energy"

    @classmethod
    def comparison_figures(cls, d: dict[str, Any]) -> dict[str, Figure]:
        return {"energy": Figure(d.get("energy_j"), "J"), "power": Figure(d.get("avg_power_w"), "W", better=None),
                "duration": Figure(d.get("duration_s"), "s")}
    schema = {"t_start": NUMBER, "t_end": NUMBER, "devices": optional(OBJECTS), "executions": optional(INT),
              "peak_power_w": optional(NUMBER), "timeline": optional(OBJECT)}

    label: str | None
    t_start: float
    t_end: float
    devices: list[dict[str, Any]]
    timelines: list[DeviceTimeline] = field(default_factory=list, repr=False)
    idle_note: str | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sample_hz: float | None = None
    interrupted: bool = False
    executions: int = 1
    show_plot: bool = True
    saved_peak_power_w: float | None = field(default=None, repr=False)  # read back without its timeline

    # --- the contract's figures (per execution when executions > 1) ---------------------------
    @property
    def _counted(self) -> list[dict[str, Any]]:
        return [d for d in self.devices if d["counted_in_total"]]

    @property
    def window_duration_s(self) -> float:
        return self.t_end - self.t_start

    @property
    def window_energy_j(self) -> float | None:
        return _sum([d["energy_j"] for d in self._counted]) if self._counted else None

    @property
    def duration_s(self) -> float:
        return self.window_duration_s / self.executions

    @property
    def energy_j(self) -> float | None:
        e = self.window_energy_j
        return None if e is None else e / self.executions

    @property
    def uncertainty_j(self) -> float | None:
        u = _sum([d["uncertainty_j"] for d in self._counted]) if self._counted else None
        return None if u is None else u / self.executions

    @property
    def avg_power_w(self) -> float | None:
        e = self.window_energy_j
        return None if e is None or self.window_duration_s <= 0 else e / self.window_duration_s

    @property
    def idle_power_w(self) -> float | None:
        return _sum([d["idle_power_w"] for d in self._counted]) if self._counted else None

    @property
    def net_energy_j(self) -> float | None:
        e, idle = self.energy_j, self.idle_power_w
        return None if e is None or idle is None else e - idle * self.duration_s

    @property
    def peak_power_w(self) -> float | None:
        t, p = self.total_timeline(scaled=False)
        inside = [w for ti, w in zip(t, p) if self.t_start <= ti <= self.t_end]
        return max(inside) if inside else self.saved_peak_power_w

    @property
    def cpu_energy_j(self) -> float | None:
        """RAPL package + DRAM energy, reported apart from GPU energy (None where not read)."""
        cpu = [d["energy_j"] for d in self.devices if d["kind"] in ("cpu-package", "dram")]
        e = _sum(cpu)
        return None if e is None else e / self.executions

    @property
    def method(self) -> str:
        if not self._counted:
            return "none"
        methods = list(dict.fromkeys(d["method"] for d in self._counted))
        return "; ".join(methods)

    @property
    def available(self) -> bool:
        return self.window_energy_j is not None

    # --- timeline ---------------------------------------------------------------------------
    def total_timeline(self, scaled: bool = True) -> tuple[list[float], list[float]]:
        """(t, W) summed over the counted sensors, on the first sensor's sample times."""
        from .sampler import interp

        lines = [tl for tl in self.timelines if tl.counted_in_total and tl.t]
        if not lines:
            return [], []
        base = lines[0].t
        total = [0.0] * len(base)
        for tl in lines:
            k = tl.scale if scaled else 1.0
            total = [acc + k * interp(tl.t, tl.power_w, x) for acc, x in zip(total, base)]
        return list(base), total

    def energy_between(self, t0: float, t1: float) -> float | None:
        """J in [t0, t1] (perf_counter s, clipped to the window), from the timeline scaled to the total."""
        t0, t1 = max(t0, self.t_start), min(t1, self.t_end)
        lines = [tl for tl in self.timelines if tl.counted_in_total and tl.t]
        if not lines:
            return None
        if t1 <= t0:
            return 0.0
        return sum(tl.scale * integrate(tl.t, tl.power_w, t0, t1) for tl in lines)

    def per_execution(self, executions: int) -> "EnergyReport":
        """The same window, its figures divided over ``executions`` runs of the measured code."""
        from dataclasses import replace

        out = replace(self, executions=max(1, int(executions)))
        out.envelope = self.envelope
        return out

    # --- export -----------------------------------------------------------------------------
    def _payload(self, timeline: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "label": self.label,
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "avg_power_w": self.avg_power_w,
            "peak_power_w": self.peak_power_w,
            "idle_power_w": self.idle_power_w,
            "net_energy_j": self.net_energy_j,
            "uncertainty_j": self.uncertainty_j,
            "method": self.method,
            "devices": [dict(d) for d in self.devices],
            "cpu_energy_j": self.cpu_energy_j,
            "executions": self.executions,
            "window_energy_j": self.window_energy_j,
            "window_duration_s": self.window_duration_s,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "idle_note": self.idle_note,
            "reason": None if self.available else self.reason,
            "warnings": list(self.warnings),
            "errors": list(self.errors),
            "interrupted": self.interrupted,
            "sample_hz": self.sample_hz,
            "samples": sum(d.get("reads") or 0 for d in self.devices),
        }
        if timeline:
            data["timeline"] = {tl.name: {"t_s": [t - self.t_start for t in tl.t], "power_w": tl.power_w}
                                for tl in self.timelines}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnergyReport":
        """A saved report (its figures; the power timeline only where it was saved with ``timeline=True``)."""
        timelines = [DeviceTimeline(name, [data["t_start"] + t for t in tl["t_s"]], list(tl["power_w"]))
                     for name, tl in (data.get("timeline") or {}).items()]
        return cls(label=data.get("label"), t_start=data["t_start"], t_end=data["t_end"],
                   devices=[dict(d) for d in data.get("devices") or []], timelines=timelines,
                   idle_note=data.get("idle_note"), reason=data.get("reason"),
                   warnings=list(data.get("warnings") or []), errors=list(data.get("errors") or []),
                   sample_hz=data.get("sample_hz"), interrupted=bool(data.get("interrupted")),
                   executions=int(data.get("executions") or 1), saved_peak_power_w=data.get("peak_power_w"))

    def headline_figures(self) -> dict[str, str]:
        if not self.available:
            return {"energy": "-"}
        return {"energy": format_energy(self.energy_j), "power": format_power(self.avg_power_w),
                "duration": format_time(self.duration_s)}

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per device/rail, with the window's totals alongside."""
        top = {k: v for k, v in data.items() if k not in ("devices", "warnings", "errors")}
        return [{**top, **{f"device.{k}": v for k, v in d.items()}} for d in data["devices"]] or [top]

    # --- views ------------------------------------------------------------------------------
    def _summary_rows(self) -> list[list[str]]:
        per = f" per execution ({self.executions} runs)" if self.executions > 1 else ""
        unc = f" ± {format_energy(self.uncertainty_j)}" if self.uncertainty_j is not None else ""
        rows = [
            ["energy" + per, format_energy(self.energy_j) + unc],
            ["net (above idle)", format_energy(self.net_energy_j)],
            ["duration" + per, format_time(self.duration_s)],
            ["power", f"avg {format_power(self.avg_power_w)} · peak {format_power(self.peak_power_w)}"
                      f" · idle {format_power(self.idle_power_w)}"],
            ["method", self.method],
        ]
        if self.cpu_energy_j is not None and any(not d["counted_in_total"] for d in self.devices
                                                 if d["kind"] in ("cpu-package", "dram")):
            rows.append(["CPU (RAPL, not in total)", format_energy(self.cpu_energy_j)])
        if self.idle_note and self.idle_power_w is not None:
            rows.append(["idle", self.idle_note])
        return rows

    def _device_rows(self) -> list[list[str]]:
        n = self.executions
        rows = []
        for d in self.devices:
            e = d["energy_j"]
            rows.append([
                d["name"] + ("" if d["counted_in_total"] else " *"),
                format_energy(None if e is None else e / n),
                format_energy(None if d["uncertainty_j"] is None else d["uncertainty_j"] / n),
                format_power(d["avg_power_w"]),
                format_power(d["peak_power_w"]),
                format_power(d["idle_power_w"]),
                format_energy(None if d["net_energy_j"] is None else d["net_energy_j"] / n),
            ])
        return rows

    _DEVICE_HEADER = ["device", "energy", "±", "avg", "peak", "idle", "net"]

    def _lines_in_view(self) -> list[str]:
        """What the figures need beside them: why there are none, the table's footnote."""
        lines = []
        if not self.available:
            lines.append(f"No energy: {self.reason or 'no sensor'}. The code ran in "
                         f"{format_time(self.duration_s)}.")
        if any(not d["counted_in_total"] for d in self.devices):
            lines.append("* shown apart, not summed into the total")
        return lines

    def _device_notes(self) -> list[str]:
        return [f"{d['name']}: {d['note']}" for d in self.devices if d.get("note")]

    def _warnings(self) -> list[str]:
        out = list(self.warnings) + [f"error: {e}" for e in self.errors]
        if self.interrupted:
            out.append("interrupted: the window closed early, figures cover what ran")
        return out

    def _notes(self) -> list[str]:
        """The text view's lines after the figures."""
        return (self._lines_in_view() + [f"note: {n}" for n in self._device_notes()]
                + [w if w.startswith(("error:", "interrupted:")) else f"warning: {w}" for w in self._warnings()])

    def title(self) -> str:
        return "Energy" + (f" - {self.label}" if self.label else "")

    def to_text(self) -> str:
        lines = [self.title()]
        if self.available:
            width = max(len(r[0]) for r in self._summary_rows())
            lines += [f"  {k.ljust(width)}  {v}" for k, v in self._summary_rows()]
            if len(self.devices) > 1 or any(not d["counted_in_total"] for d in self.devices):
                lines += ["", text_table(self._DEVICE_HEADER, self._device_rows())]
        lines += self._notes()
        return "\n".join(lines)

    def _tables_html(self) -> str:
        from ..core.display import notes_html

        parts = [f"<b>{_html.escape(self.title())}</b>"]
        if self.available:
            parts.append(html_table(["", ""], self._summary_rows()))
            if self.devices:
                parts.append(html_table(self._DEVICE_HEADER, self._device_rows()))
        else:  # what is known without a sensor: how long the code ran
            per = f" per execution ({self.executions} runs)" if self.executions > 1 else ""
            parts.append(html_table(["", ""], [["duration" + per, format_time(self.duration_s)],
                                               ["energy", "not measured (no sensor)"]]))
        parts += [f"<div style='color:#555'>{_html.escape(n)}</div>" for n in self._lines_in_view()]
        return "".join(parts) + notes_html(self._device_notes(), self._warnings())

    def to_html(self) -> str:
        from ..core.display import figure_to_html, html_block

        plot = ""
        fig = self.figure() if self.show_plot and self.available else None
        if fig is not None:
            plot = figure_to_html(fig, alt="power over time")
        return html_block("energy", self._tables_html() + plot)

    def widget(self):
        from ..core.display import figure_to_widget, html_widget, report_view

        children = [html_widget(self._tables_html())]
        fig = self.figure() if self.show_plot and self.available else None
        if fig is not None:
            children.append(figure_to_widget(fig))
        return report_view("energy", children)

    def figure(self):
        """A matplotlib Figure: power over time, window edges, idle line (None without samples)."""
        lines = [tl for tl in self.timelines if tl.t]
        if not lines:
            return None
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.0, 2.6))
        ax = fig.add_subplot()
        t0 = self.t_start
        for tl in lines:
            style = "-" if tl.counted_in_total else ":"
            (line,) = ax.plot([t - t0 for t in tl.t], tl.power_w, style, lw=1.2, label=tl.name)
            if tl.readings_t:
                ax.plot([t - t0 for t in tl.readings_t], tl.readings_w, ".", ms=2.5, alpha=0.5,
                        color=line.get_color(), label=f"{tl.name}: raw readings")
        counted = [tl for tl in lines if tl.counted_in_total]
        if len(counted) > 1:
            t, p = self.total_timeline(scaled=False)
            ax.plot([x - t0 for x in t], p, "k-", lw=1.5, label="total")
        ax.axvline(0.0, color="grey", ls="--", lw=1)
        ax.axvline(self.window_duration_s, color="grey", ls="--", lw=1, label="window")
        if self.idle_power_w is not None:
            ax.axhline(self.idle_power_w, color="tab:green", ls="-.", lw=1, label=f"idle {self.idle_power_w:.0f} W")
        ax.set_xlabel("time since window start (s)")
        ax.set_ylabel("power (W)")
        ax.set_ylim(bottom=0)
        ax.set_title(self.title(), fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        return fig
