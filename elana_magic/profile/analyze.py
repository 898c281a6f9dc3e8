"""``analyze_trace(path)``: a ProfileReport for any Chrome trace written by torch.profiler."""

from __future__ import annotations

import os
from typing import Any

from .report import ProfileReport
from .trace import (ParsedTrace, annotation_spans, breakdown, busy_idle, decode_step_time, graph_visibility_note,
                    hta_analysis, hta_available, kernel_table, launch_gaps, op_self_times, op_table)


# -- analysis entry point ------------------------------------------------------------------------------

def analyze_trace(path: str, label: str | None = None, top: int = 15, hta: bool | None = None,
                  trace: ParsedTrace | None = None, **fields: Any) -> ProfileReport:
    """A ProfileReport for a Chrome trace file written by torch.profiler (ours or anyone's)."""
    trace = trace or ParsedTrace.load(path)
    self_us = op_self_times(trace.cpu_ops)
    kinds_time, basis = _kind_breakdown(trace, self_us)
    spans = annotation_spans(trace)
    notes = list(fields.pop("notes", [])) + _trace_notes(trace, fields.get("device"))
    report = ProfileReport(
        trace_path=path, label=label or os.path.basename(path).split(".")[0],
        kernel_table=kernel_table(trace, top), op_table=op_table(trace, top, self_us),
        breakdown=kinds_time, breakdown_basis=basis,
        busy_idle=busy_idle(trace) if trace.on_gpu else None,
        launch_gaps=launch_gaps(trace) if trace.on_gpu else None,
        steps=spans, step_time=decode_step_time(spans), counts=_counts(trace),
        notes=notes, _trace=trace, **fields)
    if report.device is None:
        report.device = "cuda" if trace.on_gpu else "cpu"
    if hta is None:
        hta = trace.on_gpu and hta_available()
    if hta:
        _add_hta(report, path, top)
    return report


def _kind_breakdown(trace: ParsedTrace, self_us: list[float]) -> tuple[list[dict], str]:
    """Time per kind: GPU kernel time on a GPU trace, CPU op self time otherwise; and which basis was used."""
    if trace.on_gpu:
        dev = trace.columns("device")
        return breakdown(dev.kind_ids(), dev.dur), "GPU kernel time"
    return breakdown(trace.columns("cpu_ops").kind_ids(), self_us), "CPU op self time"


def _trace_notes(trace: ParsedTrace, device: Any) -> list[str]:
    """What the reader should know about the trace itself (CUDA graph visibility, no GPU activity)."""
    if trace.on_gpu:
        note = graph_visibility_note(trace)
        return [note] if note else []
    if str(device or "").startswith("cuda"):
        return ["the profiler recorded no GPU kernels although the work ran on CUDA (is CUPTI in use by "
                "another tool?): the tables and timeline show CPU operators"]
    return ["no GPU activity in this trace: the tables and timeline show CPU operators"]


def _counts(trace: ParsedTrace) -> dict[str, int]:
    return {"events": trace.n_events, "gpu": len(trace.device), "cpu_ops": len(trace.cpu_ops),
            "annotations": len(trace.annotations)}


def _add_hta(report: ProfileReport, path: str, top: int) -> None:
    """HTA's tables into ``report.hta``, or a note saying why there are none (an optional extra never fails the report)."""
    try:
        report.hta = hta_analysis(path, top=min(top, 10))
    except ImportError:
        report.notes.append("HolisticTraceAnalysis is not installed (pip install HolisticTraceAnalysis): our tables only")
    except Exception as exc:  # noqa: BLE001 - an optional extra must not sink the report
        report.notes.append(f"HolisticTraceAnalysis could not analyse this trace ({type(exc).__name__}: {_first_line(exc)})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
