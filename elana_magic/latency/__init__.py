"""Latency: TTFT, TPOT and TTLT of the model as loaded, with energy per phase and its roofline context.

``measure_latency(model, tokenizer=None, phases=("ttft", "tpot", "ttlt"), ...) -> LatencyReport``;
``session.GenerationSession`` runs the phases (prefill, eager or CUDA-graph decode, requests).
"""

from .measure import PHASES, measure_latency, measure_paired
from .report import LatencyReport
from .session import GenerationInputError, GenerationOutOfMemory, GenerationSession

__all__ = ["PHASES", "GenerationInputError", "GenerationOutOfMemory", "GenerationSession", "LatencyReport",
           "measure_latency", "measure_paired"]
