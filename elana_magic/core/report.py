"""The base of every result object: the envelope, dict/JSON/DataFrame export, text, HTML.

Each measurement returns a subclass (``SizeReport``, ``EnergyReport``, ``LatencyReport``,
``ProfileReport``) that implements ``_payload`` (its own figures), ``from_dict`` (read back) and
``to_text``; ``to_html``, ``widget`` and ``figure`` are richer views. ``to_dict`` is the envelope
(``core.envelope``: kind, label, created, settings, fingerprint, environment, notes, warnings)
followed by the payload.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .envelope import ENVELOPE_KEYS, FORMAT_VERSION, REPORT_KINDS, Envelope


def json_safe(value: Any) -> Any:
    """Turn numpy/torch scalars, tuples and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass
class Figure:
    """One figure two reports of a kind compare: its value and unit, its samples when timed (an interval follows),
    the timed figure it moves with (``derived_from``), and which way it improves."""

    value: float | None
    unit: str
    samples: list[float] | None = None
    rounds: list[int] | None = None   # samples per round (a paired measurement), in order
    derived_from: str | None = None   # takes the interval of that timed figure (inverted when "1/")
    better: str | None = "lower"      # which way the figure improves: "lower", "higher" or None (neither)


class Report:
    """A measurement's result. Subclasses set ``kind`` and implement ``_payload``, ``from_dict`` and ``to_text``."""

    kind: ClassVar[str] = "report"
    # the fields a saved report of this kind must hold, and their types (``core.schema``)
    schema: ClassVar[dict[str, Any]] = {}

    @classmethod
    def comparison_figures(cls, data: dict[str, Any]) -> dict[str, "Figure"]:
        """The figures ``compare`` sets side by side for two reports of this kind, read from ``to_dict()``."""
        return {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            REPORT_KINDS[cls.kind] = cls

    # -- the envelope --
    @property
    def envelope(self) -> Envelope:
        env = self.__dict__.get("_envelope")
        if env is None:
            env = self.__dict__["_envelope"] = Envelope()
        return env

    @envelope.setter
    def envelope(self, value: Envelope) -> None:
        self.__dict__["_envelope"] = value

    def stamp(self, *, settings: dict[str, Any] | None = None, model: Any = None,
              environment: dict[str, Any] | None = None) -> "Report":
        """Fill the envelope: the arguments that made the report, the model's fingerprint, the environment."""
        from .fingerprint import model_fingerprint

        env = self.envelope
        if settings is not None:
            env.settings = json_safe(dict(settings))
        if model is not None:
            env.fingerprint = model_fingerprint(model)
        if environment is not None:
            env.environment = environment
        return self

    @property
    def fingerprint(self) -> dict[str, Any] | None:
        return self.envelope.fingerprint

    @property
    def created(self) -> str:
        return self.envelope.created

    def _payload(self, **kwargs) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":  # pragma: no cover - abstract
        raise NotImplementedError

    def headline_figures(self) -> dict[str, str]:
        """The few figures a history listing shows, formatted."""
        return {}

    def to_dict(self, **kwargs) -> dict[str, Any]:
        payload = self._payload(**kwargs)
        env = self.envelope
        head = {"kind": self.kind, "format_version": FORMAT_VERSION, "label": payload.get("label"),
                "created": env.created, "settings": env.settings, "fingerprint": env.fingerprint,
                "environment": env.environment,
                "notes": list(payload.get("notes") or []),
                "warnings": list(payload.get("warnings") or []) + [w for w in env.warnings
                                                                   if w not in (payload.get("warnings") or [])]}
        return {**head, **{k: v for k, v in payload.items() if k not in ENVELOPE_KEYS}}

    def to_text(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path: str) -> str:
        """Write ``to_json()`` to ``path`` (``load_report(path)`` reads it back); returns the path."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        return path

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=indent)

    def to_dataframe(self):
        """A pandas DataFrame: one row per entry of ``rows`` when the report has them, else one row."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_dataframe() needs pandas: pip install pandas") from exc
        data = json_safe(self.to_dict())
        rows = self._dataframe_rows(data)
        return pd.DataFrame(rows)

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [_flatten(data)]

    def to_html(self) -> str:
        return f"<pre>{html.escape(self.to_text())}</pre>"

    def __str__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(f"<{type(self).__name__}>" if cycle else self.to_text())

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        """text/plain (the text report), text/html (tables + plots) and, in a kernel, the widget view."""
        from .display import report_bundle

        return report_bundle(self, include=include, exclude=exclude)

    def _ipython_display_(self) -> None:
        """Show the report once per cell: a magic that shows it and returns it (``-o`` as the last
        line) gives one view; showing ``r`` in a later cell shows it again."""
        from .display import show_report

        cell = _current_cell()
        if cell is not None and self.__dict__.get("_shown_in_cell") == cell:
            return
        show_report(self)
        self.mark_shown()

    def mark_shown(self) -> None:
        """Record that this report has been shown in the current cell."""
        self.__dict__["_shown_in_cell"] = _current_cell()


def _current_cell() -> int | None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    return None if shell is None else shell.execution_count


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


# Tables fit a notebook's width (about 800 px at a 1100 px window): numbers never break, words do,
# so a long label or verdict wraps instead of pushing the columns after it out of view.
_TABLE_STYLE = ("border-collapse:collapse;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;"
                "font-size:13px;margin:4px 0 10px 0;max-width:100%")
_CELL_STYLE = "padding:2px 8px;border-bottom:1px solid #e4e4e4"
_NUMBER_STYLE = "white-space:nowrap"
_WORDS_STYLE = "white-space:normal;overflow-wrap:break-word;min-width:4em"
_CAPTION_STYLE = "caption-side:top;text-align:left;font-weight:600;padding:2px 0 4px 0;white-space:normal"


def _looks_numeric(cell: Any) -> bool:
    """Numbers and their placeholders ('-' for none), e.g. '1.5 GB', '= 524 kB', '-3.2%', '0 – 270 ms'; not words
    that start with one ('20% lower (95% CI 10-14%)', a verdict beside its figure)."""
    text = str(cell).strip()
    if text in ("", "-", "—"):
        return True
    text = text.lstrip("=~±<>-+ ")
    return bool(text) and text[0].isdigit() and len(text.split()) <= 4


def html_table(header: list[str], rows: list[list[Any]], caption: str | None = None) -> str:
    """A small, self-contained HTML table (escaped, inline styles so it reads the same in widgets,
    classic/lab notebooks and static HTML); numbers right-aligned."""
    def cell(tag: str, value: Any, right: bool) -> str:
        align, wrap = ("right", _NUMBER_STYLE) if right else ("left", _WORDS_STYLE)
        return f"<{tag} style='{_CELL_STYLE};{wrap};text-align:{align}'>{html.escape(str(value))}</{tag}>"

    numeric = [all(_looks_numeric(r[i]) for r in rows if i < len(r)) and bool(rows) for i in range(len(header))]
    head = "".join(cell("th", h, numeric[i]) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", c, i < len(numeric) and numeric[i]) for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    cap = f"<caption style='{_CAPTION_STYLE}'>{html.escape(caption)}</caption>" if caption else ""
    return (f"<table class='elana-table' style=\"{_TABLE_STYLE}\">{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def text_table(header: list[str], rows: list[list[Any]]) -> str:
    """A fixed-width text table, right-aligned numbers."""
    cells = [[str(h) for h in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class DataReport(Report):
    """A report whose figures are one dict, ``data``, also read as attributes (``fit.answer``)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("data", {})
        if name in data:
            return data[name]
        raise AttributeError(name)
