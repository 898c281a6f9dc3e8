"""The plain API's defaults, in one place: the API's signatures, the magics and the command read them here.

No imports (no torch): the option spec (``core/options.py``) builds the magics' and the command's
parsers from these before anything heavy is loaded.
"""

from __future__ import annotations

# measure_latency / profile_phase: the request
BATCH = 1
PROMPT_LEN = 512
GEN_LEN = 128
# measure_latency: the repetition rule
WARMUP = 2
REPEATS = 5
MIN_TIME_S = 1.0
# measure_size: the grid
SIZE_BATCH = (1,)
SIZE_SEQ_LEN = (1024, 2048)
# measure_energy: a window of repeated calls lasts at least this long (~10 ticks of the NVML counter)
ENERGY_MIN_TIME_S = 1.0
# profile_phase / profile_block
PROFILE_PHASE = "tpot"
PROFILE_STEPS = {"ttft": 3, "tpot": 16, "ttlt": 1}
PROFILE_TOP = 15
