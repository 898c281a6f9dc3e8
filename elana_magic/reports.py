"""Every kind of report, imported so that each registers itself with the envelope (``Report`` subclasses
register their ``kind`` when their module is imported). What reads saved reports back (``load_report``, the
history, ``compare``, the magics) imports this first; ``core`` itself knows no kind."""

from __future__ import annotations

from .core.compare import Comparison
from .energy.report import EnergyReport
from .latency.grid import LatencyGridReport
from .latency.projection import ProjectionReport
from .latency.report import LatencyReport
from .profile.report import ProfileReport
from .size.fit import FitReport
from .size.report import SizeReport

KINDS = {cls.kind: cls for cls in (SizeReport, FitReport, EnergyReport, LatencyReport, LatencyGridReport,
                                   ProjectionReport, ProfileReport, Comparison)}
