"""Latency: TTFT, TPOT and TTLT of the model as loaded, with energy per phase and its roofline context.

``measure_latency(model, tokenizer=None, **settings) -> LatencyReport`` (lists of batch / prompt_len /
gen_len: a ``LatencyGridReport``, one row per cell; ``ngpus=N``: replicas); ``measure_paired`` for
alternating rounds; ``project(report, ["H100", "L4"])`` projects a report to other GPUs. Every option lives
in one ``LatencySettings``; ``api`` dispatches it to the runners (``measure``, ``grid``, ``replicas``), and
``session.GenerationSession`` runs the phases.
"""

from .api import measure_grid, measure_latency, measure_paired
from .errors import GenerationInputError, GenerationOutOfMemory
from .grid import LatencyGridReport
from .projection import ProjectionError, ProjectionReport, project
from .report import LatencyReport
from .session import GenerationSession
from .settings import PHASES, LatencySettings

__all__ = ["PHASES", "GenerationInputError", "GenerationOutOfMemory", "GenerationSession", "LatencyGridReport",
           "LatencyReport", "LatencySettings", "ProjectionError", "ProjectionReport", "measure_grid", "measure_latency",
           "measure_paired", "project"]
