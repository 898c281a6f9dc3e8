"""SizeReport: parameters, buffers and the cache for a (batch, seq_len) grid, and its views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.report import Figure, Report, html_table, text_table
from ..core.schema import INT, NUMBER, OBJECT, OBJECTS, TEXT, optional
from ..core.units import format_bytes
from .weights import WeightBytes


@dataclass(repr=False)
class SizeReport(Report):
    """Parameters, buffers and the cache for a (batch, seq_len) grid. All sizes in bytes."""

    kind = "size"

    @classmethod
    def comparison_figures(cls, d: dict[str, Any]) -> dict[str, Figure]:
        out = {"parameters": Figure(d.get("param_count"), "count", better=None),
               "model bytes": Figure(d.get("model_bytes"), "bytes")}
        for r in d.get("rows") or []:
            out[f"cache B={r['batch']} L={r['seq_len']}"] = Figure(r.get("cache_bytes"), "bytes")
        return out
    schema = {"model": TEXT, "source": TEXT, "params_bytes": INT, "buffers_bytes": INT, "model_bytes": NUMBER,
              "param_count": INT, "trainable_param_count": INT, "buffer_count": INT, "rows": OBJECTS,
              "model_dtype": TEXT, "cache_dtype": TEXT, "ssm_state_dtype": TEXT, "dtypes": optional(OBJECT),
              "layers": optional(OBJECT)}

    model: str
    source: str
    weights: WeightBytes
    rows: list[dict[str, Any]]
    model_dtype: str
    cache_dtype: str
    ssm_state_dtype: str
    layer_counts: dict[str, int]
    binary: bool = False
    notes: list[str] = field(default_factory=list)
    gpu: dict[str, Any] | None = None
    model_on_gpu: bool = False
    checkpoint: dict[str, Any] | None = None
    label: str | None = None

    @property
    def params_bytes(self) -> int:
        return self.weights.params_bytes

    @property
    def buffers_bytes(self) -> int:
        return self.weights.buffers_bytes

    @property
    def model_bytes(self) -> int:
        return self.weights.params_bytes + self.weights.buffers_bytes

    def _payload(self) -> dict[str, Any]:
        w = self.weights
        return {
            "label": self.label or self.model,
            "model": self.model,
            "source": self.source,
            "params_bytes": w.params_bytes,
            "buffers_bytes": w.buffers_bytes,
            "model_bytes": self.model_bytes,
            "param_count": w.param_count,
            "trainable_param_count": w.trainable_count,
            "frozen_param_count": w.param_count - w.trainable_count,
            "buffer_count": w.buffer_count,
            "tied_tensors": w.tied,
            "dtypes": w.dtypes,
            "model_dtype": self.model_dtype,
            "cache_dtype": self.cache_dtype,
            "ssm_state_dtype": self.ssm_state_dtype,
            "layers": self.layer_counts,
            "rows": [dict(r) for r in self.rows],
            "gpu": self.gpu,
            "checkpoint": self.checkpoint,
            "notes": list(self.notes),
            "units": "binary (GiB = 2**30 bytes)" if self.binary else "SI (GB = 1e9 bytes)",
            "packed_modules": w.packed_modules,
            "model_on_gpu": self.model_on_gpu,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SizeReport":
        weights = WeightBytes(params_bytes=data["params_bytes"], buffers_bytes=data["buffers_bytes"],
                              param_count=data["param_count"], trainable_count=data["trainable_param_count"],
                              buffer_count=data["buffer_count"], tied=data.get("tied_tensors", 0),
                              dtypes={k: dict(v) for k, v in (data.get("dtypes") or {}).items()},
                              packed_modules=data.get("packed_modules", 0))
        return cls(model=data["model"], source=data["source"], weights=weights, rows=[dict(r) for r in data["rows"]],
                   model_dtype=data["model_dtype"], cache_dtype=data["cache_dtype"],
                   ssm_state_dtype=data["ssm_state_dtype"], layer_counts=dict(data.get("layers") or {}),
                   binary=str(data.get("units", "")).startswith("binary"), notes=list(data.get("notes") or []),
                   gpu=data.get("gpu"), model_on_gpu=bool(data.get("model_on_gpu")), checkpoint=data.get("checkpoint"),
                   label=data.get("label"))

    def headline_figures(self) -> dict[str, str]:
        out = {"params": f"{self.weights.param_count:,}", "model": self._fmt(self.model_bytes)}
        if self.rows and self.rows[0].get("cache_bytes") is not None:
            r = self.rows[0]
            out[f"cache B={r['batch']} L={r['seq_len']}"] = self._fmt(r["cache_bytes"])
        return out

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        head = {k: data[k] for k in ("model", "params_bytes", "buffers_bytes", "model_bytes")}
        return [{**head, **row} for row in data["rows"]]

    # views

    def _fmt(self, n) -> str:
        return format_bytes(n, binary=self.binary)

    def _summary_lines(self) -> list[str]:
        w = self.weights
        frozen = w.param_count - w.trainable_count
        lines = [
            f"{self.model}  ({self.source})",
            f"parameters {w.param_count:,} ({w.trainable_count:,} trainable, {frozen:,} frozen): "
            f"{self._fmt(w.params_bytes)}"
            + (f"; {w.tied} tied tensor(s) counted once" if w.tied else ""),
            f"buffers {w.buffer_count:,}: {self._fmt(w.buffers_bytes)}",
            f"model {self._fmt(self.model_bytes)}   cache dtype {self.cache_dtype}"
            + (f", SSM state {self.ssm_state_dtype}" if self._has_ssm() else "")
            + f"   layers: {_counts_text(self.layer_counts)}",
        ]
        if self.checkpoint:
            c = self.checkpoint
            dtypes = ", ".join(f"{d} {self._fmt(n)}" for d, n in sorted(c["dtypes"].items(), key=lambda kv: -kv[1]))
            lines.append(f"checkpoint on disk: {self._fmt(c['bytes'])} in {c['files']} safetensors file(s) ({dtypes})")
        if self.gpu:
            lines.append(f"GPU {self.gpu['name']}: {self._fmt(self.gpu['free_bytes'])} free of "
                         f"{self._fmt(self.gpu['total_bytes'])}"
                         + (" (the model is already on it)" if self.model_on_gpu else ""))
        return lines

    def _has_ssm(self) -> bool:
        return any((r.get("ssm_cache_bytes") or 0) > 0 for r in self.rows)

    def _dtype_table(self) -> tuple[list[str], list[list[Any]]]:
        header = ["dtype", "params", "param bytes", "buffers", "buffer bytes"]
        rows = [[dt, f"{d['params']:,}", self._fmt(d["params_bytes"]), f"{d['buffers']:,}", self._fmt(d["buffers_bytes"])]
                for dt, d in sorted(self.weights.dtypes.items(), key=lambda kv: -(kv[1]["params_bytes"] + kv[1]["buffers_bytes"]))]
        return header, rows

    def _grid_table(self) -> tuple[list[str], list[list[Any]]]:
        measured = any("measured_cache_bytes" in r for r in self.rows)
        fits = any("fits_gpu" in r for r in self.rows)
        header = ["batch", "seq_len", "KV cache", "SSM state", "cache", "model + cache"]
        header += ["measured cache"] if measured else []
        header += ["fits GPU"] if fits else []
        rows = []
        for r in self.rows:
            row = [r["batch"], r["seq_len"], self._fmt(r["kv_cache_bytes"]), self._fmt(r["ssm_cache_bytes"]),
                   self._fmt(r["cache_bytes"]), self._fmt(r["total_bytes"])]
            if measured:
                m = r.get("measured_cache_bytes")
                row.append("-" if m is None else ("= " if m == r["cache_bytes"] else "") + self._fmt(m))
            if fits:
                row.append({True: "yes", False: "NO", None: "-"}[r.get("fits_gpu")])
            rows.append(row)
        return header, rows

    def to_text(self) -> str:
        parts = ["\n".join(self._summary_lines()), text_table(*self._dtype_table()), text_table(*self._grid_table())]
        if self.notes:
            parts.append("\n".join(f"note: {n}" for n in self.notes))
        return "\n\n".join(parts)

    def to_html(self) -> str:
        from ..core.display import figure_to_html, html_block

        try:
            plot = figure_to_html(self.figure(), alt="model and cache size")
        except ImportError:  # matplotlib missing: tables only
            plot = ""
        return html_block("size", self._tables_html() + plot)

    def _tables_html(self) -> str:
        import html

        summary = "<br>".join(html.escape(line).replace("   ", " &nbsp;·&nbsp; ") for line in self._summary_lines())
        from ..core.display import notes_html

        return (f"<p style='margin:0 0 6px 0'>{summary}</p>"
                + html_table(*self._grid_table(), caption="cache for each (batch, seq_len)")
                + html_table(*self._dtype_table(), caption="weights by dtype")
                + notes_html(list(self.notes)))

    def figure(self):
        """A stacked bar chart (a matplotlib Figure): model, KV cache and SSM state for each grid row."""
        from matplotlib.figure import Figure

        from ..core.units import bytes_unit

        top = max([r["total_bytes"] for r in self.rows] + [self.model_bytes])
        free = None
        if self.gpu:
            free = self.gpu["free_bytes"] + (self.model_bytes if self.model_on_gpu else 0)
        scale, unit = bytes_unit(max(top, free or 0), binary=self.binary)
        labels = [f"B={r['batch']}\nL={r['seq_len']}" for r in self.rows]
        model = [self.model_bytes / scale] * len(self.rows)
        kv = [(r["kv_cache_bytes"] or 0) / scale for r in self.rows]
        ssm = [(r["ssm_cache_bytes"] or 0) / scale for r in self.rows]
        fig = Figure(figsize=(min(9.0, 3.2 + 0.75 * len(self.rows)), 2.8))
        ax = fig.add_subplot()
        ax.bar(labels, model, label="model", color="#8da0cb", width=0.6)
        ax.bar(labels, kv, bottom=model, label="KV cache", color="#fc8d62", width=0.6)
        if any(ssm):
            ax.bar(labels, ssm, bottom=[a + b for a, b in zip(model, kv)], label="SSM state", color="#66c2a5", width=0.6)
        highest = max(a + b + c for a, b, c in zip(model, kv, ssm))
        if free is not None:
            ax.axhline(free / scale, color="k", ls="--", lw=1, label="GPU free")
            highest = max(highest, free / scale)
        ax.set_ylim(0, highest * 1.18)  # headroom above the tallest bar
        ax.set_ylabel(unit, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(self.model, fontsize=9, loc="left")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        return fig

    def widget(self):
        """The tables and the bar chart, stacked (ipywidgets)."""
        from ..core.display import figure_to_widget, html_widget, report_view

        return report_view("size", [html_widget(self._tables_html()), figure_to_widget(self.figure())])


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "-"
