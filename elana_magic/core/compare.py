"""Comparing reports: every figure two reports share, as a ratio to the first, with an interval and a verdict.

The first report is the baseline; each other one is compared with it. Timed figures (TTFT, TPOT,
TTLT) carry a ratio and its 95% confidence interval from one estimator, so the ratio always lies
inside its interval: for two reports measured apart, the ratio of medians with an interval
bootstrapped from the samples both reports kept (``core.stats.ratio_of_medians_ci``); for the rounds
of one paired measurement, the geometric mean of the per-round ratios with Student's t on their logs
(``core.stats.paired_ratio``). A verdict in words follows ("TPOT 12% lower (95% CI 10-14%)" or "no
difference beyond noise"). Figures derived from TPOT (tokens/s, MBU) carry its interval; figures
measured once (bytes, joules of one window) carry none. Each figure knows which way is better (lower
times and joules, higher tokens/s), which colours the chart. Everything works from ``to_dict()``, so
a report read back from a file compares like a live one.

Two reports measured apart rest on their own conditions (``environment["conditions"]``, the GPU's
state): where those differ enough to move a timing (``core.conditions.differences``: other processes'
load, CPU threads, GPU clocks or temperature), the comparison warns and withholds the timed verdicts
("TPOT 78% lower, but host load changed between the runs (0.1 -> 1.9 busy cores): no conclusion; run
them as paired rounds: ..."); the rounds of one paired measurement share their conditions, so theirs
stand. A figure without an interval gets no verdict either: it moved, and no conclusion follows.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .conditions import ROUND_TEMPERATURE_SPREAD_C, differences, round_temperature_spread, rounds_line
from .conditions import summary as conditions_summary
from .cost import format_grams, format_usd
from .errors import ElanaError
from .fingerprint import sameness, short_fingerprint
from .envelope import REPORT_KINDS
from .report import Figure, Report, html_table, text_table
from .stats import (MIN_ROUNDS, NOISE_THRESHOLD, beyond_noise, change_words, paired_ratio, ratio_of_medians_ci,
                    ratio_verdict, round_ratios)
from .units import format_bytes, format_energy, format_power, format_time

CLOCK_TOLERANCE = 0.05   # power limits further apart than this make a warning (clocks: core.conditions)
PAIRED_HINT_ROUNDS = 6   # the rounds a withheld verdict suggests: enough for an interval that can be narrow


class CompareError(ElanaError, ValueError):
    """Reports that cannot be compared, or a name that names no report; one line."""


@dataclass
class Ratio:
    """One shared figure: baseline and other value, their ratio, its 95% interval and the verdict."""

    group: str
    figure: str
    label: str            # the compared (non-baseline) report
    baseline: float
    value: float
    ratio: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str = ""
    unit: str = ""
    noise: float = NOISE_THRESHOLD
    round_ratios: list[float] | None = None   # a paired measurement: the ratio in each round
    better: str | None = None   # "lower" or "higher": which way this figure improves (None: neither)
    withheld: str | None = None   # why no verdict is given although an interval is (conditions differed)

    @property
    def significant(self) -> bool:
        """A real change: the interval lies beyond the noise threshold and the verdict stands (the verdict
        says so too)."""
        return self.withheld is None and beyond_noise(self.ci_low, self.ci_high, self.noise)

    @property
    def table_verdict(self) -> str:
        """The verdict as a table cell beside its figure: without the figure's name, and for a withheld one
        without the hint on how to measure again (the warning under the table gives it once)."""
        text = self.verdict.split("; ", 1)[0] if self.withheld else self.verdict
        return text[len(self.figure) + 1:] if text.startswith(self.figure + " ") else text

    @property
    def improved(self) -> bool | None:
        """True for a real change for the better, False for the worse, None for noise or no direction."""
        if not self.significant or self.better is None or self.ratio is None:
            return None
        return (self.ratio < 1) == (self.better == "lower")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return b / a


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return {"bytes": lambda v: format_bytes(v), "s": lambda v: format_time(v, digits=4), "J": format_energy,
            "W": format_power, "count": lambda v: f"{v:,.0f}", "share": lambda v: f"{v:.1%}", "$": format_usd,
            "g": format_grams}.get(
        unit, lambda v: f"{v:.4g}")(value)


# -- comparability -------------------------------------------------------------------------------------
def _env(d: dict) -> dict:
    return d.get("environment") or {}


def _gpu_start(d: dict) -> dict:
    return (_env(d).get("gpu") or {}).get("start") or {}


def _differs(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a != b


def comparability_warnings(base: dict, other: dict, label: str) -> list[str]:
    """Why ``other`` is not measured like ``base``: device, engine, workload, versions, power limit, clocks."""
    out = []
    if base.get("kind") != other.get("kind"):
        out.append(f"{label} is a {other.get('kind')} report, the baseline a {base.get('kind')} report: "
                   "only the fingerprints compare")
    dev_a = _env(base).get("device_name") or base.get("device_name")
    dev_b = _env(other).get("device_name") or other.get("device_name")
    if _differs(dev_a, dev_b):
        out.append(f"{label} ran on {dev_b}, the baseline on {dev_a}")
    for key, what in (("engine", "engine"), ("batch", "batch"), ("prompt_len", "prompt length"),
                      ("gen_len", "generation length"), ("phase", "phase"), ("steps", "steps")):
        if _differs(base.get(key), other.get(key)):
            out.append(f"{label}: {what} {other.get(key)} vs {base.get(key)} in the baseline")
    prefill_a, prefill_b = ((d.get("engines") or {}).get("prefill") for d in (base, other))
    if _differs(prefill_a, prefill_b):
        out.append(f"{label}: prefill engine {prefill_b} vs {prefill_a} in the baseline")
    for lib in ("torch", "transformers", "elana_magic", "driver"):
        if _differs(_env(base).get(lib), _env(other).get(lib)):
            out.append(f"{label}: {lib} {_env(other).get(lib)} vs {_env(base).get(lib)} in the baseline")
    for key, what in (("power_limit_w", "power limit"),):
        a, b = _gpu_start(base).get(key), _gpu_start(other).get(key)
        if a and b and abs(b / a - 1) > CLOCK_TOLERANCE:
            out.append(f"{label}: {what} {b:g} vs {a:g} in the baseline (more than {CLOCK_TOLERANCE:.0%} apart)")
    if _paired(base, other):
        out += _round_temperatures(base, other, label)
    return out


def _round_temperatures(base: dict, other: dict, label: str) -> list[str]:
    """Paired rounds of these two that started at GPU temperatures more than ROUND_TEMPERATURE_SPREAD_C apart."""
    section = base.get("rounds_conditions") or other.get("rounds_conditions")
    names = {base.get("label"), other.get("label")} - {None}
    rounds = (section or {}).get("rounds") or []
    spread = round_temperature_spread(section, names if any(r.get("label") in names for r in rounds) else None)
    if spread is None:
        return []
    apart, cold, hot = spread

    def name(r: dict) -> str:
        return f"round {r.get('round')}" + (f" ({r['label']})" if r.get("label") else "")

    return [f"{label}: paired rounds started at GPU temperatures {apart:.0f} C apart (more than "
            f"{ROUND_TEMPERATURE_SPREAD_C:g} C): {name(cold)} at {cold['temperature_c']:.0f} C, {name(hot)} at "
            f"{hot['temperature_c']:.0f} C; --cooldown auto lets the GPU settle between rounds"]


# -- the comparison ------------------------------------------------------------------------------------
def _report_label(d: dict, i: int) -> str:
    return str(d.get("label") or f"{d.get('kind', 'report')} {i}")


def _unique_labels(dicts: list[dict]) -> list[str]:
    labels = [_report_label(d, i) for i, d in enumerate(dicts)]
    seen: dict[str, int] = {}
    out = []
    for text in labels:
        seen[text] = seen.get(text, 0) + 1
        out.append(text if labels.count(text) == 1 else f"{text} ({seen[text]})")
    return out


Estimate = tuple[float | None, float | None, float | None, list[float] | None]   # point, low, high, per round


def _estimate(a: Figure, b: Figure) -> Estimate:
    """The ratio and its 95% interval from one estimator: the rounds of a paired measurement (geometric
    mean of the per-round ratios), else the ratio of the samples' medians with its bootstrap interval."""
    per_round = round_ratios(a.samples, b.samples, a.rounds, b.rounds)
    if per_round:
        return (*paired_ratio(per_round), per_round)
    ci = ratio_of_medians_ci(a.samples, b.samples)
    return (*ci, None) if ci else (None, None, None, None)


def _derived(a: Figure, ratio: float, fa: dict[str, Figure], fb: dict[str, Figure],
             timed: dict[str, tuple[float, float, float]]) -> tuple[float, float | None, float | None]:
    """A figure that is (other factors) / T ("1/T") or (other factors) x T ("T") for a timed figure T: T's
    point and interval, inverted when divided by, and scaled by the other factors' own ratio."""
    inverted = (a.derived_from or "").startswith("1/")
    name = _derived_name(a)
    if name not in timed:
        return ratio, None, None
    point_t, lo_t, hi_t = timed[name]
    plain_t = _ratio(fa[name].value, fb[name].value)
    factor = None if plain_t is None else (ratio * plain_t if inverted else ratio / plain_t)
    if factor is None or not factor > 0 or not math.isfinite(factor):
        return ratio, None, None
    if inverted:
        return factor / point_t, factor / hi_t, factor / lo_t
    return factor * point_t, factor * lo_t, factor * hi_t


def _derived_name(a: Figure) -> str:
    """The timed figure ``a`` is derived from ("1/TPOT" -> "TPOT", "TTLT" -> "TTLT")."""
    return (a.derived_from or "").removeprefix("1/")


def _once_verdict(ratio: float | None) -> str:
    """A figure measured once: the change, no claim about noise."""
    if ratio is None:
        return ""
    return "same" if ratio == 1 else f"{abs(ratio - 1):.1%} {'lower' if ratio < 1 else 'higher'}"


def _no_interval(per_round: list[float] | None) -> str:
    """Why a timed figure has no interval, and what would give one."""
    if per_round is not None and len(per_round) < MIN_ROUNDS:
        return (f"{len(per_round)} paired rounds give no interval: {MIN_ROUNDS} or more do "
                f"(--rounds {MIN_ROUNDS}, or rounds={MIN_ROUNDS})")
    return "too few samples for an interval: 6 or more a side give one"


def _ratios(base: dict, other: dict, label: str, noise: float = NOISE_THRESHOLD) -> list[Ratio]:
    kind = base.get("kind")
    cls = REPORT_KINDS.get(kind)
    if kind != other.get("kind") or cls is None:
        return []
    fa, fb = cls.comparison_figures(base), cls.comparison_figures(other)   # each kind knows its own figures
    timed: dict[str, tuple[float, float, float]] = {}
    why_none: dict[str, str] = {}
    rows = []
    for name, a in fa.items():
        b = fb.get(name)
        if b is None or a.value is None or b.value is None:
            continue
        ratio, low, high, per_round = _ratio(a.value, b.value), None, None, None
        if a.samples and b.samples:
            point, low, high, per_round = _estimate(a, b)
            ratio = ratio if point is None else point
            if low is not None:
                timed[name] = (ratio, low, high)
            why_none[name] = _no_interval(per_round)
        elif a.derived_from and ratio is not None:
            ratio, low, high = _derived(a, ratio, fa, fb, timed)
        no_interval = why_none.get(name, why_none.get(_derived_name(a), _no_interval(None)))
        verdict = (ratio_verdict(name, ratio, low, high, noise, no_interval) if a.samples or a.derived_from
                   else _once_verdict(ratio))
        rows.append(Ratio(kind, name, label, a.value, b.value, ratio, low, high, verdict, a.unit, noise, per_round,
                          a.better))
    return rows


def _paired(base: dict, other: dict) -> bool:
    """Two reports of one paired measurement: they ran in the same alternating rounds."""
    return bool(base.get("rounds")) and base.get("rounds") == other.get("rounds")


def condition_changes(base: dict, other: dict) -> list[str]:
    """The conditions in which two reports measured apart differ enough to move a timing (none for the
    reports of one paired measurement, whose rounds shared them, nor for sizes, which no load moves)."""
    if base.get("kind") != other.get("kind") or base.get("kind") == "size" or _paired(base, other):
        return []
    device = str(_env(base).get("device") or base.get("device") or "cpu")
    return differences(_env(base), _env(other), cpu=not device.startswith("cuda"))


def _paired_hint(base_label: str, label: str, kind: str | None) -> str:
    if kind != "latency":
        return "measure both again, one right after the other, on a quiet machine"
    return (f"run them as paired rounds: %elana_latency {base_label} {label} --rounds {PAIRED_HINT_ROUNDS} "
            f"(measure_paired([...], rounds={PAIRED_HINT_ROUNDS}))")


def _withhold(rows: list[Ratio], changes: list[str], hint: str) -> None:
    """No verdict for timed figures whose two runs rested on other conditions: the interval holds the
    samples' own noise, not the change of machine between them."""
    why = ", ".join(changes)
    for r in rows:
        if r.ci_low is not None and r.ratio is not None:
            r.withheld = why
            r.verdict = f"{r.figure} {change_words(r.ratio)}, but {why}: no conclusion; {hint}"


ROUND_SPREAD = 0.10   # per-round ratios further apart than this get a note


def _unsteady_rounds(rows: list[Ratio]) -> list[str]:
    out = []
    for r in rows:
        if r.round_ratios and max(r.round_ratios) / min(r.round_ratios) > 1 + ROUND_SPREAD:
            out.append(f"{r.label}: {r.figure} moved between rounds (ratio per round "
                       f"{', '.join(f'{x:.3g}' for x in r.round_ratios)}), so its interval is wide: "
                       "more rounds (--rounds) or a quieter machine narrow it")
    return out


def _changed_kernels(base: dict, other: dict, label: str, top: int = 8) -> list[dict[str, Any]]:
    """The kernels (or CPU ops) whose total time changed most between two profile reports."""
    def table(d: dict) -> dict[str, float]:
        rows = d.get("kernel_table") or [{"name": r["name"], "total_us": r.get("self_us", r.get("total_us", 0))}
                                         for r in d.get("op_table") or []]
        return {r["name"]: float(r.get("total_us") or 0) for r in rows}

    ta, tb = table(base), table(other)
    changes = [{"label": label, "name": n, "baseline_us": ta.get(n, 0.0), "us": tb.get(n, 0.0),
                "change_us": tb.get(n, 0.0) - ta.get(n, 0.0)} for n in set(ta) | set(tb)]
    changes.sort(key=lambda c: -abs(c["change_us"]))
    return [c for c in changes[:top] if c["change_us"] != 0]


@dataclass(repr=False, eq=False)
class Comparison(Report):
    """Reports side by side: every shared figure as a ratio to the first (the baseline), with 95%
    intervals for timed figures, verdicts, the kernels that changed most (profiles) and warnings."""

    kind = "comparison"

    reports: list[Report]
    labels: list[str]
    ratios: list[Ratio] = field(default_factory=list)
    changed_kernels: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rounds: list[str] = field(default_factory=list)   # a paired measurement's order of rounds

    @property
    def label(self) -> str:
        return " vs ".join(self.labels)

    def verdicts(self) -> list[str]:
        """The verdicts in words, one per timed figure (and figures derived from one)."""
        return [f"{r.label}: {r.verdict}" for r in self.ratios if r.ci_low is not None or "noise" in r.verdict]

    def ratio(self, figure: str, label: str | None = None) -> Ratio:
        """The ratio row of ``figure`` (for ``label``, default the first compared report)."""
        for r in self.ratios:
            if r.figure == figure and (label is None or r.label == label):
                return r
        raise KeyError(f"no shared figure {figure!r}" + (f" for {label!r}" if label else ""))

    def _payload(self) -> dict[str, Any]:
        return {
            "label": self.label, "labels": list(self.labels),
            "fingerprints": [r.fingerprint for r in self.reports],
            "ratios": [asdict(r) for r in self.ratios], "verdicts": self.verdicts(),
            "changed_kernels": list(self.changed_kernels), "rounds": list(self.rounds),
            "warnings": list(self.warnings), "notes": list(self.notes),
            "reports": [r.to_dict() for r in self.reports],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Comparison":
        from .envelope import report_from_dict

        comp = compare([report_from_dict(r) for r in data["reports"]], labels=data.get("labels"))
        comp.rounds = list(data.get("rounds") or [])
        return comp

    def _dataframe_rows(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return data["ratios"]

    def to_dataframe(self):
        """One row per ratio; ``baseline``, ``value``, ``ratio``, ``ci_low``, ``ci_high`` are floats
        (NaN where there is none), in the row's ``unit`` (seconds for times)."""
        df = super().to_dataframe()
        for col in _NUMERIC_COLUMNS:
            if col in df.columns:
                df[col] = df[col].astype(float)
        return df

    def headline_figures(self) -> dict[str, str]:
        return {r.figure: f"{r.ratio:.3f}x" for r in self.ratios if r.ci_low is not None and r.ratio is not None}

    # -- views --
    def _rows(self) -> tuple[list[str], list[list[str]]]:
        base = self.labels[0]
        header = ["figure", "verdict", f"{base} (baseline)", "compared", "value", "ratio", "95% CI"]
        rows = []
        for r in self.ratios:
            ci = f"{r.ci_low:.3f}-{r.ci_high:.3f}" if r.ci_low is not None else "-"
            rows.append([r.figure, r.table_verdict, _format(r.baseline, r.unit), r.label, _format(r.value, r.unit),
                         "-" if r.ratio is None else f"{r.ratio:.3f}", ci])
        return header, rows

    def _head_lines(self) -> list[str]:
        lines = [f"elana compare: {self.label}"]
        for lab, rep in zip(self.labels, self.reports):
            ran = conditions_summary(rep.envelope.environment or {}) if rep.kind != "size" else ""
            lines.append(f"  {lab}: {rep.kind}, {short_fingerprint(rep.fingerprint)}, created {rep.created}"
                         + (f"; ran with {ran}" if ran else ""))
        same = sameness([r.fingerprint for r in self.reports])
        if same:
            lines.append(f"  {same}")
        if self.rounds:
            lines.append(f"  paired rounds: {', '.join(self.rounds)}")
            steady = rounds_line(self.reports[0].to_dict().get("rounds_conditions")) if self.reports else None
            if steady:
                lines.append(f"  {steady}")
        if any(r.round_ratios for r in self.ratios):
            lines.append("  a paired figure's ratio is the geometric mean of its per-round ratios")
        return lines

    def _kernel_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["compared", "kernel", "baseline", "now", "change"]
        rows = [[c["label"], c["name"][:70], format_time(c["baseline_us"] / 1e6), format_time(c["us"] / 1e6),
                 ("+" if c["change_us"] > 0 else "-") + format_time(abs(c["change_us"]) / 1e6)]
                for c in self.changed_kernels]
        return header, rows

    def to_text(self) -> str:
        parts = ["\n".join(self._head_lines())]
        header, rows = self._rows()
        parts.append(text_table(header, rows) if rows else "(no shared figures)")
        if self.changed_kernels:
            parts.append("kernels whose time changed most:\n" + text_table(*self._kernel_rows()))
        parts += [f"warning: {w}" for w in self.warnings] + [f"note: {n}" for n in self.notes]
        return "\n".join(parts)

    def _tables_html(self) -> str:
        import html

        head = "<br>".join(html.escape(x) for x in self._head_lines())
        body = (wrapping_table(*self._rows(), caption="ratios to the baseline") if self.ratios
                else "<p>(no shared figures)</p>")
        kernels = (wrapping_table(*self._kernel_rows(), caption="kernels whose time changed most")
                   if self.changed_kernels else "")
        warn = "".join(f"<div><b>warning:</b> {html.escape(w)}</div>" for w in self.warnings)
        notes = "".join(f"<div><i>note: {html.escape(n)}</i></div>" for n in self.notes)
        return f"<p>{head}</p>{body}{kernels}{warn}{notes}"

    def _has_chart(self) -> bool:
        return any(r.ratio is not None and r.ratio > 0 for r in self.ratios)

    def to_html(self) -> str:
        from .display import figure_to_html, html_block

        fig = figure_to_html(self.figure(), alt="ratios with their 95% intervals") if self._has_chart() else ""
        return html_block("compare", self._tables_html() + fig)

    def widget(self):
        from .display import figure_to_widget, html_widget, report_view

        children = [html_widget(self._tables_html())]
        if self._has_chart():
            children.append(figure_to_widget(self.figure()))
        return report_view("compare", children)

    def figure(self):
        """Each ratio as a point with its 95% interval (log scale), the line at 1 = no change. Ratios
        beyond ``CHART_RANGE`` either way are drawn at its edge as a triangle pointing outward."""
        from matplotlib.figure import Figure

        rows = [r for r in self.ratios if r.ratio is not None and r.ratio > 0]
        fig = Figure(figsize=(7.5, 0.32 * max(3, len(rows)) + 1.2))
        ax = fig.add_subplot()
        names = [f"{r.figure} ({r.label})" if len(self.labels) > 2 else r.figure for r in rows][::-1]
        for y, r in enumerate(rows[::-1]):
            x = _on_chart(r.ratio)
            if x != r.ratio:
                ax.plot(x, y, ">" if x > 1 else "<", color=_colour(r))
            elif r.ci_low is not None and r.ci_high is not None:
                # max(0, ...): the interval holds the point, so this only absorbs float rounding
                lo, hi = _on_chart(r.ci_low), _on_chart(r.ci_high)
                xerr = [[max(0.0, x - lo)], [max(0.0, hi - x)]]
                ax.errorbar(x, y, xerr=xerr, fmt="o", color=_colour(r), capsize=3)
            else:
                ax.plot(x, y, "s", color=NO_CHANGE_COLOUR)
        ax.axvline(1.0, color="black", lw=1, ls="--")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xscale("log")
        clipped = any(_on_chart(r.ratio) != r.ratio for r in rows)
        beyond = f"; triangles: beyond {CHART_RANGE:.0e}x" if clipped else ""
        ax.set_xlabel(f"ratio to {self.labels[0]} (95% CI where samples were kept; squares: no interval{beyond})\n"
                      "green: better, red: worse, grey: no difference beyond noise")
        ax.set_title(self.label, fontsize=9)
        fig.tight_layout()
        return fig


CHART_RANGE = 1e6  # a ratio past a millionfold is drawn at the edge: a log axis cannot tick 1e263


def _on_chart(x: float) -> float:
    return min(max(x, 1 / CHART_RANGE), CHART_RANGE) if math.isfinite(x) else CHART_RANGE


_NUMERIC_COLUMNS = ("baseline", "value", "ratio", "ci_low", "ci_high", "noise")

BETTER_COLOUR, WORSE_COLOUR, NO_CHANGE_COLOUR, CHANGED_COLOUR = "#55A868", "#C44E52", "#8C8C8C", "#4C72B0"


def _colour(r: Ratio) -> str:
    """Green for a real change for the better, red for the worse (whichever way the figure improves),
    grey for noise, blue for a real change of a figure that is neither better nor worse either way."""
    if not r.significant:
        return NO_CHANGE_COLOUR
    return {True: BETTER_COLOUR, False: WORSE_COLOUR, None: CHANGED_COLOUR}[r.improved]


_WRAP = "white-space:normal;overflow-wrap:break-word"  # words broken only when one cannot fit a line


def wrapping_table(header: list[str], rows: list[list[Any]], caption: str | None = None) -> str:
    """``html_table`` whose text cells (left-aligned: verdicts, names) wrap and which never grows wider
    than its container, so a narrow notebook shows every column; numbers stay on one line."""
    out = html_table(header, rows, caption=caption)
    out = out.replace("class='elana-table' style=\"", "class='elana-table' style=\"max-width:100%;table-layout:auto;", 1)

    def wrap(m: re.Match) -> str:
        # a long text (a verdict) keeps a readable width: the number columns, which never wrap, would squeeze it
        # to a word per line
        wide = ";min-width:14em" if len(html.unescape(m.group(3))) > 40 else ""
        return f"{m.group(1)}{_WRAP}{wide}{m.group(2)}{m.group(3)}</td>"

    return re.sub(r"(<td style='[^']*)white-space:nowrap(;text-align:left'>)(.*?)</td>", wrap, out)


def compare(reports: Sequence[Report], labels: Sequence[str] | None = None,
            noise_threshold: float = NOISE_THRESHOLD) -> Comparison:
    """Compare ``reports`` with the first: ratios of every shared figure, intervals, verdicts, warnings.
    A change whose interval reaches inside ±``noise_threshold`` is called noise."""
    reports = list(reports)
    if len(reports) < 2:
        raise CompareError(f"compare needs at least two reports, got {len(reports)}")
    for r in reports:
        if not isinstance(r, Report):
            raise CompareError(f"can't compare a {type(r).__name__}: pass elana reports")
    dicts = [r.to_dict() for r in reports]
    labels = list(labels) if labels else _unique_labels(dicts)
    comp = Comparison(reports=reports, labels=labels)
    for d, label in zip(dicts[1:], labels[1:]):
        comp.warnings += comparability_warnings(dicts[0], d, label)
        rows = _ratios(dicts[0], d, label, noise_threshold)
        changes = condition_changes(dicts[0], d)
        if changes:
            hint = _paired_hint(labels[0], label, d.get("kind"))
            comp.warnings.append(f"{label} and the baseline were measured apart under other conditions: "
                                 f"{', '.join(changes)}; timed verdicts are withheld: {hint}")
            _withhold(rows, changes, hint)
        comp.ratios += rows
        comp.notes += _unsteady_rounds(rows)
        if d.get("kind") == "profile" == dicts[0].get("kind"):
            comp.changed_kernels += _changed_kernels(dicts[0], d, label)
    for lab, d in zip(labels, dicts):
        figures = REPORT_KINDS[d["kind"]].comparison_figures(d) if d.get("kind") in REPORT_KINDS else {}
        timed = [f for f in figures.values() if f.samples is not None]   # figures that keep their samples
        if timed and not any(f.samples for f in timed):
            comp.notes.append(f"{lab} kept no samples (saved by an older version): no intervals for it")
    return comp
