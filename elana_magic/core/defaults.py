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
# the floor under every phase's median: at least this many samples and seconds, unless the user forces
# fewer (--min-time 0); a median below it carries a note saying how many samples it rests on
SAMPLE_FLOOR = 10
SAMPLE_FLOOR_S = 0.5
# a phase's energy window lasts at least this long (~30 ticks of the NVML counter)
ENERGY_WINDOW_S = 3.0
# stop early once the median's 95% CI is within this fraction of it
REL_CI = 0.01
SEED = 0
# engines: prefill "auto" = a compiled step in a CUDA graph where decode has one, "eager" = plain transformers
PREFILL = "auto"
PREFILL_ENGINES = ("auto", "eager")
NGPUS = 1
# measure_paired: alternating rounds per model
PAIRED_ROUNDS = 4
MAX_PAIRED_ROUNDS = 1000  # each round runs every model: more is a typo, not a measurement
# measure_size: the grid
SIZE_BATCH = (1,)
SIZE_SEQ_LEN = (1024, 2048)
# measure_energy: a window of repeated calls lasts at least this long (~10 ticks of the NVML counter)
ENERGY_MIN_TIME_S = 1.0
# profile_phase / profile_block
PROFILE_PHASE = "tpot"
PROFILE_STEPS = {"ttft": 3, "tpot": 16, "ttlt": 1}
PROFILE_TOP = 15
