"""Latency: TTFT, TPOT and TTLT of the model as loaded, with energy per phase and its roofline context.

``measure_latency(model, tokenizer=None, phases=("ttft", "tpot", "ttlt"), ...) -> LatencyReport``
(lists of batch / prompt_len / gen_len: ``grid.measure_grid`` -> ``LatencyGridReport``, one row per cell);
``session.GenerationSession`` runs the phases (prefill, eager or CUDA-graph decode, requests).
"""

from .grid import LatencyGridReport, measure_grid
from .measure import PHASES, measure_latency, measure_paired
from .report import LatencyReport
from .session import GenerationInputError, GenerationOutOfMemory, GenerationSession

__all__ = ["PHASES", "GenerationInputError", "GenerationOutOfMemory", "GenerationSession", "LatencyGridReport",
           "LatencyReport", "measure_grid", "measure_latency", "measure_paired"]
