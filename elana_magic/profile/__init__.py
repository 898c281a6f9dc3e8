"""Profile: kernel-level traces of a phase or any code, for Perfetto, with tables and an inline timeline.

``profile_phase(model, phase="tpot", ...)``, ``with profile_block(...) as prof``, ``analyze_trace(path)``,
all returning a ``ProfileReport``.
"""

from .analyze import analyze_trace
from .capture import DEFAULT_OUT, ProfileError, ProfileInterrupted, profile_block, profile_phase, profiler_running
from .report import ProfileReport
from .trace import ParsedTrace, load_events

__all__ = ["DEFAULT_OUT", "ParsedTrace", "ProfileError", "ProfileInterrupted", "ProfileReport", "analyze_trace", "load_events",
           "profile_block", "profile_phase", "profiler_running"]
