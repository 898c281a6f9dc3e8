"""Workload grids: every (batch, prompt length, generation length) cell measured on the model as loaded.

``run_grid(model, settings)`` -> ``LatencyGridReport`` (``measure_latency`` / ``measure_grid`` with lists
reach it through ``api``). One energy meter serves every cell (its idle power is
measured once); a cell that runs out of memory is marked "out of memory" and the others go on. Each
cell's own ``LatencyReport`` is kept in ``grid.reports`` (None where the cell did not run).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import torch

from ..core.conditions import rounds_line
from ..core.cost import cost_columns, format_usd
from ..core.progress import terminal_bar
from ..core.envelope import ENVELOPE_KEYS, FORMAT_VERSION
from ..core.report import DataReport, html_table, text_table
from ..core.schema import NUMBER, OBJECT, OBJECTS, TEXT, Field, optional
from ..core.units import bytes_column, column_formatter, energy_column
from . import measure as runner
from .cooldown import Cooldown
from .devices import cuda_indices, model_devices
from .errors import GenerationOutOfMemory
from .inputs import check_lengths, model_device
from .settings import LatencySettings

OUT_OF_MEMORY = "out of memory"
INTS = Field("a list of integers", lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                                                     for x in v))
_FIGURES = re.compile(r"\d[\d.,]*")


def _bar(total: int, progress: Any):
    """A terminal bar over the cells where ``progress`` is True (the terminal's default); none for a reporter
    passed in (the magics' live view shows each cell's phases) or when progress is off."""
    return terminal_bar("elana grid", "cell", total=total) if progress is True else None


def run_grid(model: torch.nn.Module, settings: LatencySettings, *, tokenizer: Any = None, meter: Any = None,
             progress: Any = True) -> "LatencyGridReport":
    """Measure every cell of ``settings`` (batch x prompt_len x gen_len) with ``measure.run_single``."""
    cells = list(settings.cells())
    for cell in cells:  # every cell's lengths are checked against the model before anything runs
        check_lengths(model, cell.batch, cell.prompt_len, cell.gen_len)
    notes: list[str] = []
    own_meter = meter is None and settings.energy is not False
    why_no_energy = None
    if own_meter:
        meter, why_no_energy = runner._open_meter(settings.energy, model_devices(model), notes)
        if why_no_energy and settings.energy is not False:
            notes.append(why_no_energy)
    reports: list[Any] = []
    rows: list[dict[str, Any]] = []
    bar = _bar(len(cells), progress)
    t0 = time.perf_counter()
    cooldown = Cooldown(settings.cooldown, cuda_indices(model_devices(model)), unit="cell")
    try:
        for cell in cells:
            cooldown.before(cell=f"batch {cell.batch}, prompt {cell.prompt_len}, gen {cell.gen_len}")
            if bar is not None:
                bar.set_postfix_str(f"batch {cell.batch}, prompt {cell.prompt_len}, gen {cell.gen_len}")
            try:
                rep = runner.run_single(model, cell, tokenizer=tokenizer, meter=meter, progress=progress)
            except GenerationOutOfMemory as exc:
                reports.append(None)
                rows.append({"batch": cell.batch, "prompt_len": cell.prompt_len, "gen_len": cell.gen_len,
                             "status": OUT_OF_MEMORY, "error": str(exc)})
            else:
                reports.append(rep)
                rows.append(cell_row(rep))
            if bar is not None:
                bar.update(1)
    finally:
        cooldown.close()
        if bar is not None:
            bar.close()
        if own_meter and meter is not None:
            meter.close()
    notes += cooldown.notes
    first = next((r for r in reports if r is not None), None)
    data = {
        "label": settings.label,
        "model": type(model).__name__,
        "device_name": first.data["device_name"] if first is not None else str(model_device(model)),
        "batch": list(settings.values("batch")), "prompt_len": list(settings.values("prompt_len")),
        "gen_len": list(settings.values("gen_len")), "phases": list(settings.phases),
        "cells": rows,
        "largest_batch_that_fit": largest_batches(rows),
        "engines": sorted({r["engine"] for r in rows if r.get("engine")}),
        "time_to_result_s": time.perf_counter() - t0,
        "notes": notes + _grid_notes(reports),
    }
    if cooldown.section() is not None:
        data["rounds_conditions"] = cooldown.section()
    grid = LatencyGridReport(data, reports)
    grid.stamp(settings=settings.to_dict())
    if first is not None:  # the model's fingerprint and where it ran: the first cell's (one model, one machine)
        grid.envelope.fingerprint = first.envelope.fingerprint
        grid.envelope.environment = first.envelope.environment
    return grid


def _grid_notes(reports) -> list[str]:
    seen: list[str] = []
    for rep in reports:
        for n in (rep.data.get("notes", []) if rep is not None else []):
            if n not in seen:
                seen.append(n)
    return seen


def cell_row(rep) -> dict[str, Any]:
    """One cell's figures: latency medians and CIs, energy per unit, throughput, MBU/MFU, peak memory."""
    d, e, r = rep.data, rep.data.get("energy") or {}, rep.data.get("roofline") or {}
    row: dict[str, Any] = {"batch": d["batch"], "prompt_len": d["prompt_len"], "gen_len": d["gen_len"],
                           "status": "ok", "engine": d["engine"]}
    for key in ("ttft", "tpot", "ttlt"):
        s = d.get(f"{key}_ms") or {}
        row[f"{key}_ms"] = s.get("median")
        row[f"{key}_ci95_low_ms"] = s.get("ci95_low")
        row[f"{key}_ci95_high_ms"] = s.get("ci95_high")
        row[f"{key}_n"] = s.get("n")
    for key in ("j_per_prompt", "j_per_token", "j_per_request", "tokens_per_s", "tokens_per_j"):
        row[key] = e.get(key)
    row["mbu"], row["mfu"] = r.get("mbu"), r.get("mfu")
    phases = (d.get("memory") or {}).get("phases") or []
    peak = max(phases, key=lambda p: p["measured_peak_bytes"], default=None)
    row["peak_memory_bytes"] = peak["measured_peak_bytes"] if peak else None
    row["peak_memory_phase"] = peak["phase"] if peak else None
    row["peak_memory_kind"] = peak["measured_kind"] if peak else None
    prefill = next((p for p in phases if p["phase"] == "prefill"), None)
    row["prefill_peak_bytes"] = prefill["measured_peak_bytes"] if prefill else None
    row["activation_bytes"] = prefill["activation_bytes"] if prefill else None
    row["compile_variant"] = (d.get("compile") or {}).get("variant")
    row["time_to_result_s"] = d.get("time_to_result_s")
    row.update(cost_columns(d.get("cost")))
    return row


def _usd(value: float | None) -> str:
    return "-" if value is None else format_usd(value)


def largest_batches(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (prompt, gen): the largest batch that ran, and the smallest that ran out of memory."""
    out = []
    for key in dict.fromkeys((r["prompt_len"], r["gen_len"]) for r in rows):
        mine = [r for r in rows if (r["prompt_len"], r["gen_len"]) == key]
        fit = [r["batch"] for r in mine if r["status"] == "ok"]
        oom = [r["batch"] for r in mine if r["status"] == OUT_OF_MEMORY]
        out.append({"prompt_len": key[0], "gen_len": key[1], "largest_batch": max(fit) if fit else None,
                    "smallest_out_of_memory": min(oom) if oom else None})
    return out


class LatencyGridReport(DataReport):
    """One row per cell (``cells``); each cell's ``LatencyReport`` in ``reports`` (None: out of memory)."""

    kind = "latency-grid"
    schema = {"model": TEXT, "device_name": TEXT, "batch": INTS, "prompt_len": INTS, "gen_len": INTS,
              "cells": OBJECTS, "largest_batch_that_fit": OBJECTS, "time_to_result_s": NUMBER,
              "rounds_conditions": optional(OBJECT),
              "reports": Field("a list of saved latency reports or nulls",
                               lambda v: isinstance(v, list) and all(r is None or isinstance(r, dict) for r in v))}

    def __init__(self, data: dict[str, Any], reports: list[Any]):
        super().__init__(data)
        self.reports = reports

    def __len__(self) -> int:
        return len(self.data["cells"])

    def to_dict(self) -> dict[str, Any]:
        """The envelope (kind, format version, settings, the model's fingerprint, environment), the grid's figures,
        then each cell's saved report (None where it ran out of memory)."""
        env = self.envelope
        head = {"kind": self.kind, "format_version": FORMAT_VERSION, "label": self.data.get("label"),
                "created": env.created, "settings": env.settings, "fingerprint": env.fingerprint,
                "environment": env.environment, "notes": list(self.data.get("notes") or []),
                "warnings": list(env.warnings)}
        return {**head, **{k: v for k, v in self.data.items() if k not in ENVELOPE_KEYS},
                "reports": [None if r is None else r.to_dict() for r in self.reports]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyGridReport":
        from ..core.envelope import report_from_dict

        reports = [None if r is None else report_from_dict(r) for r in data["reports"]]
        kept = {k: v for k, v in data.items() if k not in ENVELOPE_KEYS and k != "reports"}
        return cls({"label": data.get("label"), **kept, "notes": list(data.get("notes") or [])}, reports)

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [dict(row) for row in data["cells"]]

    # -- text / HTML -------------------------------------------------------------------------------
    def title(self) -> str:
        d = self.data
        label = f"{d['label']} · " if d.get("label") else ""
        return (f"{label}{d['model']} on {d['device_name']} · {len(d['cells'])} cells (batch"
                f" {'/'.join(map(str, d['batch']))} x prompt {'/'.join(map(str, d['prompt_len']))} x gen"
                f" {'/'.join(map(str, d['gen_len']))})")

    def _table(self) -> tuple[list[str], list[list[str]]]:
        header = ["batch", "prompt", "gen", "TTFT", "TPOT", "TTLT", "J/prompt", "J/token", "J/request",
                  "tokens/s", "tokens/J", "MBU", "MFU", "$/1M tokens", "gCO2e/1M tokens", "peak mem", "engine"]
        ok = [r for r in self.data["cells"] if r["status"] == "ok"]
        units = {key: column_formatter([None if r.get(f"{key}_ms") is None else r[f"{key}_ms"] / 1e3 for r in ok])
                 for key in ("ttft", "tpot", "ttlt")}
        joules = {key: energy_column([r.get(key) for r in ok]) for key in ("j_per_prompt", "j_per_token", "j_per_request")}
        peak = bytes_column([r.get("peak_memory_bytes") for r in ok])

        def ci(row, key):
            med, lo, hi = row.get(f"{key}_ms"), row.get(f"{key}_ci95_low_ms"), row.get(f"{key}_ci95_high_ms")
            t = units[key]
            if med is None:
                return "-"
            text = t(med / 1e3)
            if lo is None or hi is None or not med:
                return text
            half = (hi - lo) / 2 / med
            # a wide interval is shown as its ends: "±267%" reads as nonsense for a positive time
            return f"{text} ±{half:.0%}" if half < 0.1 else f"{text} (95% CI {t(lo / 1e3)}-{t(hi / 1e3)})"

        def num(v, fmt="{:.4g}"):
            return "-" if v is None else fmt.format(v)

        rows = []
        for r in self.data["cells"]:
            if r["status"] != "ok":
                rows.append([r["batch"], r["prompt_len"], r["gen_len"], r["status"]] + [""] * (len(header) - 4))
                continue
            rows.append([r["batch"], r["prompt_len"], r["gen_len"], ci(r, "ttft"), ci(r, "tpot"), ci(r, "ttlt"),
                         joules["j_per_prompt"](r["j_per_prompt"]), joules["j_per_token"](r["j_per_token"]),
                         joules["j_per_request"](r["j_per_request"]), num(r["tokens_per_s"]), num(r["tokens_per_j"]),
                         num(r["mbu"], "{:.0%}"), num(r["mfu"], "{:.0%}"), _usd(r.get("usd_per_1m_tokens")),
                         num(r.get("gco2_per_1m_tokens"), "{:.3g}"), peak(r["peak_memory_bytes"]), r["engine"]])
        # columns with nothing known (no energy without a sensor, no MBU without a peak, no cost without rates)
        # are left out
        keep = [i for i in range(len(header)) if i < 6 or i >= 15 or any(row[i] not in ("", "-") for row in rows)]
        return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]

    def _summary_lines(self) -> list[str]:
        lines = []
        for f in self.data["largest_batch_that_fit"]:
            fit = f"largest batch that fit: {f['largest_batch']}" if f["largest_batch"] else "no batch fit"
            oom = f" (batch {f['smallest_out_of_memory']} ran out of memory)" if f["smallest_out_of_memory"] else ""
            lines.append(f"prompt {f['prompt_len']} + gen {f['gen_len']}: {fit}{oom}")
        steady = rounds_line(self.data.get("rounds_conditions"))
        if steady:
            lines.append(steady)
        kinds = {r.get("peak_memory_kind") for r in self.data["cells"] if r.get("peak_memory_kind")}
        if kinds:
            lines.append("peak mem: " + ("the allocator's peak (allocated)" if kinds == {"allocated"}
                                         else "growth of the process's resident memory") + " of the phase that needed most")
        lines.append(f"time to result: {self.data['time_to_result_s']:.1f} s for the grid")
        return lines

    def _notes(self) -> list[str]:
        """Each note once: notes alike but for their figures (each cell's "TPOT is noisy: ...") as the
        first of them, with how many more cells said the same."""
        groups: dict[str, list[str]] = {}
        for note in dict.fromkeys(self.data.get("notes", [])):
            groups.setdefault(_FIGURES.sub("#", note), []).append(note)
        return [alike[0] + (f" (and {len(alike) - 1} more cell{'s' if len(alike) > 2 else ''} alike)"
                            if len(alike) > 1 else "") for alike in groups.values()]

    def to_text(self) -> str:
        header, rows = self._table()
        parts = ["elana latency grid: " + self.title(), text_table(header, rows)]
        parts += self._summary_lines()
        parts += [f"note: {n}" for n in self._notes()]
        return "\n".join(parts)

    def _tables_html(self) -> str:
        import html

        from ..core.display import notes_html

        header, rows = self._table()
        return (html_table(header, rows, caption="elana latency grid: " + self.title())
                + "".join(f"<div>{html.escape(x)}</div>" for x in self._summary_lines()) + notes_html(self._notes()))

    def to_html(self) -> str:
        from ..core.display import figure_to_html, html_block

        try:
            fig = figure_to_html(self.figure(), alt="latency grid")
        except ImportError:
            fig = ""
        return html_block("latency-grid", self._tables_html() + fig)

    def widget(self):
        from ..core.display import figure_to_widget, html_widget, report_view

        return report_view("latency-grid", [html_widget(self._tables_html()), figure_to_widget(self.figure())])

    # -- plots -------------------------------------------------------------------------------------
    def figure(self):
        """TPOT and J/token against context length (a line per batch); throughput and tokens/J against
        batch (a line per context length). A matplotlib Figure (no pyplot state is touched)."""
        from matplotlib.figure import Figure

        ok = [r for r in self.data["cells"] if r["status"] == "ok"]
        gens = sorted({r["gen_len"] for r in ok})
        specs = [("prompt_len", "batch", "tpot_ms", "context length (prompt tokens)", "TPOT (ms)",
                  "TPOT vs context length", "batch"),
                 ("prompt_len", "batch", "j_per_token", "context length (prompt tokens)", "J/token",
                  "energy per decode step vs context length", "batch"),
                 ("batch", "prompt_len", "tokens_per_s", "batch", "tokens/s", "decode throughput vs batch", "prompt"),
                 ("batch", "prompt_len", "tokens_per_j", "batch", "tokens/J", "tokens per joule vs batch", "prompt")]
        specs = [sp for sp in specs if any(r.get(sp[2]) is not None for r in ok)] or specs[:1]  # no empty panel
        cols = 2 if len(specs) > 1 else 1
        nrows = math.ceil(len(specs) / cols)
        fig = Figure(figsize=(5.2 * cols, 3.4 * nrows))
        axes = fig.subplots(nrows, cols, squeeze=False).ravel()

        def lines(ax, x_key, group_key, y_key, xlabel, ylabel, title, group_name):
            groups = sorted({(r[group_key], r["gen_len"]) for r in ok})
            drawn = False
            for value, gen in groups:
                pts = sorted((r[x_key], r[y_key]) for r in ok
                             if r[group_key] == value and r["gen_len"] == gen and r[y_key] is not None)
                if pts:
                    name = f"{group_name} {value}" + (f", gen {gen}" if len(gens) > 1 else "")
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
                    drawn = True
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            if drawn:
                ax.legend(fontsize=8)
                ax.set_xscale("log", base=2)
            else:
                ax.text(0.5, 0.5, f"no {ylabel} measured", ha="center", va="center", fontsize=9,
                        transform=ax.transAxes)

        for ax, spec in zip(axes, specs):
            lines(ax, *spec)
        for ax in axes[len(specs):]:
            ax.set_axis_off()
        fig.tight_layout()
        return fig
