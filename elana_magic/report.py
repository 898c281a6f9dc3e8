"""The base of every result object: dict/JSON/DataFrame export, text for terminals, HTML for notebooks.

Each measurement returns a subclass (``SizeReport``, ``EnergyReport``, ``LatencyReport``,
``ProfileReport``) that implements ``to_dict`` and ``to_text``; ``to_html`` and ``widget`` are
optional richer views.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any


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


class Report:
    """A measurement's result. Subclasses implement ``to_dict`` and ``to_text``."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_text(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

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


def html_table(header: list[str], rows: list[list[Any]], caption: str | None = None) -> str:
    """A small, self-contained HTML table (escaped)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    cap = f"<caption style='caption-side:top;text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table class='elana-table'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(header: list[str], rows: list[list[Any]]) -> str:
    """A fixed-width text table, right-aligned numbers."""
    cells = [[str(h) for h in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
