"""The kernel's history: every report a magic produced, numbered, so that any two can be compared.

Bounded (``LIMIT`` reports; dropping the oldest adds a note). Saved and loaded as JSON lines (one
report's ``to_dict()`` per line, with its ``format_version``), so a comparison can span kernel restarts
and machines; loading checks each line on its own and keeps the good ones (``Loaded.refused`` names the
others). The text and HTML views show each report's headline figures formatted ("254.5 ms");
``to_dataframe()`` gives them as numbers, the unit in the column's name (``ttft_ms``, ``j_per_token``,
``model_bytes``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .envelope import FORMAT_VERSION, ReportFileError, report_from_dict
from .fingerprint import short_fingerprint
from .report import Report, json_safe, text_table

LIMIT = 200


@dataclass
class Loaded:
    """What ``History.load`` did: the indices of the reports it added, one line per line it refused."""

    added: list[int] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@dataclass
class HistoryEntry:
    index: int
    report: Report

    @property
    def label(self) -> str:
        return str(getattr(self.report, "label", None) or f"{self.report.kind} #{self.index}")

    def row(self) -> dict[str, Any]:
        fp = self.report.fingerprint
        return {"index": self.index, "label": self.label,
                "kind": self.report.kind, "created": self.report.created,
                "fingerprint": (fp or {}).get("hash"), "model": short_fingerprint(fp),
                "figures": self.report.headline_figures(), "values": headline_values(self.report)}


def _one_report(lines: list[str]) -> bool:
    """True for a file ``report.save()`` wrote (one indented JSON object), not JSON lines."""
    if len(lines) < 2 or not lines[0].lstrip().startswith("{") or lines[0].strip().endswith("}"):
        return False
    try:
        return isinstance(json.loads("".join(lines)), dict)
    except json.JSONDecodeError:
        return False


def _read_line(line: str) -> Report:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise ReportFileError("not JSON: pass a file written by %elana_history --save") from None
    report = report_from_dict(data)
    try:
        HistoryEntry(0, report).row()  # the listing must work before the report joins it
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ReportFileError(f"{report.kind} report cannot be listed: {type(exc).__name__}: {exc}") from None
    return report


# -- the headline figures as numbers, by kind (read from to_dict(), so saved reports give them too) --
def _latency_values(d: dict) -> dict[str, float | None]:
    out = {f"{key}_ms": (d.get(f"{key}_ms") or {}).get("median") for key in ("ttft", "tpot", "ttlt")}
    energy = d.get("energy") or {}
    return out | {"tokens_per_s": energy.get("tokens_per_s"), "j_per_token": energy.get("j_per_token")}


def _size_values(d: dict) -> dict[str, float | None]:
    first = (d.get("rows") or [{}])[0]
    return {"params": d.get("param_count"), "model_bytes": d.get("model_bytes"),
            "cache_bytes": first.get("cache_bytes"), "cache_batch": first.get("batch"),
            "cache_seq_len": first.get("seq_len")}


def _energy_values(d: dict) -> dict[str, float | None]:
    return {"energy_j": d.get("energy_j"), "power_w": d.get("avg_power_w"), "duration_s": d.get("duration_s")}


def _profile_values(d: dict) -> dict[str, float | None]:
    total = sum(r.get("time_us") or 0 for r in d.get("breakdown") or [])
    return {"gpu_step_us": (d.get("step_time") or {}).get("gpu_mean_us"), "time_us": total or None,
            "kernels": (d.get("counts") or {}).get("gpu", 0)}


VALUES: dict[str, Callable[[dict], dict[str, float | None]]] = {
    "latency": _latency_values, "size": _size_values, "energy": _energy_values, "profile": _profile_values}


def headline_values(report: Report) -> dict[str, float | None]:
    """The report's headline figures as numbers, keyed by name and unit (``ttft_ms``); {} for other kinds."""
    values = VALUES.get(report.kind)
    return values(report.to_dict()) if values else {}


class History(Report):
    """Numbered reports, oldest first; ``history[i]`` by index, ``history['label']`` the latest with that label."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.entries: list[HistoryEntry] = []
        self.notes: list[str] = []
        self._next = 0

    def add(self, report: Report) -> int:
        """Append ``report``; returns its index (indices are never reused)."""
        if not isinstance(report, Report):
            raise TypeError(f"the history keeps elana reports, not {type(report).__name__}")
        index = self._next
        self._next += 1
        self.entries.append(HistoryEntry(index, report))
        if len(self.entries) > self.limit:
            old = self.entries.pop(0)
            self.notes.append(f"dropped #{old.index} ({old.row()['label']}): the history keeps the last {self.limit} reports")
        return index

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return (e.report for e in self.entries)

    def __getitem__(self, key: int | str) -> Report:
        return self.get(key)

    def get(self, key: int | str) -> Report:
        """By index (``3``, ``'#3'``; negative counts from the end) or by label (the latest with it)."""
        if isinstance(key, str) and re.fullmatch(r"#?-?\d+", key.strip()):
            key = int(key.strip().lstrip("#"))
        if isinstance(key, int):
            if key < 0:
                if -key > len(self.entries):
                    raise KeyError(f"the history holds {len(self.entries)} report(s)")
                return self.entries[key].report
            for e in self.entries:
                if e.index == key:
                    return e.report
            raise KeyError(f"no report #{key} in the history (see %elana_history)")
        for e in reversed(self.entries):
            if e.label == key:
                return e.report
        raise KeyError(f"no report labelled {key!r} in the history (see %elana_history)")

    def clear(self) -> None:
        """Forget every report; numbering starts again at 0."""
        self.entries.clear()
        self.notes.clear()
        self._next = 0

    def save(self, path: str) -> str:
        """Write every report as one JSON line; returns the path."""
        with open(os.path.expanduser(path), "w", encoding="utf-8") as f:
            for e in self.entries:
                f.write(json.dumps(json_safe({"format_version": FORMAT_VERSION, **e.report.to_dict()})) + "\n")
        return path

    def load(self, path: str) -> Loaded:
        """Append the reports of a saved history (JSON lines). A line that is not a report this release
        can read is refused (one line naming the file, line and field; also kept in ``notes``); the
        others are added. ``ReportFileError`` only when the file cannot be read."""
        path = os.path.expanduser(path)
        try:
            with open(path, encoding="utf-8") as f:
                lines = list(f)
        except OSError as exc:
            raise ReportFileError(f"cannot read {path!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ReportFileError(f"{path!r} is not text: pass a file written by %elana_history --save") from None
        loaded = Loaded()
        if _one_report(lines):  # a file written by report.save(): one report over several lines
            lines = ["".join(lines)]
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                report = _read_line(line)
            except ReportFileError as exc:
                loaded.refused.append(f"{path} line {n}: {exc}")
                continue
            loaded.added.append(self.add(report))
        self.notes.extend(f"refused {r}" for r in loaded.refused)
        return loaded

    # -- export and views --
    def to_dict(self, **kwargs) -> dict[str, Any]:
        return {"kind": "history", "limit": self.limit, "entries": [e.row() for e in self.entries],
                "notes": list(self.notes)}

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k not in ("figures", "values")} | row["values"]
                for row in data["entries"]]

    def to_dataframe(self):
        """One row per report: index, label, kind, created, fingerprint, model, then the headline figures
        as numbers (float, NaN where a report lacks one), the unit in the column name."""
        df = super().to_dataframe()
        for col in set(df.columns) - _TEXT_COLUMNS:
            if df[col].dtype == object:   # every row None: pandas can't tell it is a number
                df[col] = df[col].astype(float)
        return df

    def _table(self) -> tuple[list[str], list[list[str]]]:
        # "model" ends with the fingerprint's short hash (the full one is in to_dataframe / to_dict)
        header = ["#", "label", "figures", "kind", "model"]
        rows = [[r["index"], r["label"], ", ".join(f"{k} {v}" for k, v in r["figures"].items()), r["kind"],
                 r["model"]] for r in (e.row() for e in self.entries)]
        return header, rows

    def to_text(self) -> str:
        if not self.entries:
            return "elana history: empty (every report a magic produces joins it)"
        return "\n".join([f"elana history: {len(self.entries)} report(s)", text_table(*self._table())]
                         + [f"note: {n}" for n in self.notes])

    def to_html(self) -> str:
        import html

        from .display import html_block

        if not self.entries:
            return html_block("history", f"<p>{html.escape(self.to_text())}</p>")
        notes = "".join(f"<div><i>note: {html.escape(n)}</i></div>" for n in self.notes)
        from .compare import wrapping_table

        table = wrapping_table(*self._table(), caption=f"elana history: {len(self.entries)} report(s)")
        return html_block("history", table + notes)


_TEXT_COLUMNS = {"index", "label", "kind", "created", "fingerprint", "model"}

HISTORY = History()


def history() -> History:
    """The history of this kernel (process)."""
    return HISTORY


def find_report(item: Any, history: History | None = None) -> Report:
    """A report from a report, a history index or label, or a saved file (``report.save`` / ``to_json``)."""
    from .envelope import load_report

    history = HISTORY if history is None else history
    if isinstance(item, Report):
        return item
    if isinstance(item, (str, os.PathLike)) and os.path.isfile(os.path.expanduser(os.fspath(item))):
        return load_report(item)
    if isinstance(item, (int, str)):
        try:
            return history.get(item)
        except KeyError as exc:
            raise KeyError(f"{exc.args[0]}; nor is {item!r} a saved report file") from None
    raise TypeError(f"can't compare a {type(item).__name__}: pass a report, a history index or label, or a file")
