#!/usr/bin/env bash
# Builds a fresh virtual environment from binder/ alone, as mybinder.org does (pip install -r
# binder/requirements.txt, then binder/postBuild), and runs the notebooks given (default: every one
# in notebooks/) in it, each kernel under Binder's 2 GB (scripts/run_notebooks.py). Exit 0 when every
# cell ran without an error within the limit. The environment goes to $BINDER_ENV (default: a
# temporary folder, removed afterwards); pip's cache is reused, so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
if [ $# -gt 0 ]; then NOTEBOOKS=("$@"); else NOTEBOOKS=(notebooks/*.ipynb); fi
for i in "${!NOTEBOOKS[@]}"; do NOTEBOOKS[i]=$(realpath "${NOTEBOOKS[i]}"); done
if [ -n "${BINDER_ENV:-}" ]; then
  ENV=$BINDER_ENV
else
  ENV=$(mktemp -d)/binder-env
  trap 'rm -rf "$(dirname "$ENV")"' EXIT
fi
PY=${PYTHON:-python3}
"$PY" -m venv --clear "$ENV"
export PATH="$ENV/bin:$PATH"          # postBuild's `python` is the environment's
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH                      # only what binder/ installed
# Where the PyTorch index is unreachable (an offline CI mirror), pip skips it at once instead of
# retrying it for every package; torch then comes from the configured mirror or wheel folder.
if ! python -c "import socket; socket.getaddrinfo('download.pytorch.org', 443)" 2>/dev/null; then
  export PIP_RETRIES=0
fi
python -m pip install -q -r binder/requirements.txt
bash binder/postBuild
# repo2docker's image brings Jupyter itself; here the kernel and the runner stand in for it.
python -m pip install -q ipykernel nbclient
# every notebook under Binder's 2 GB, each kernel's peak printed (and written to $BINDER_PEAKS when set)
python "$REPO/scripts/run_notebooks.py" --limit-gb "${BINDER_LIMIT_GB:-2}" ${BINDER_PEAKS:+--json "$BINDER_PEAKS"} "${NOTEBOOKS[@]}"
python -c "import elana_magic, torch; print(f'binder check: ran in a fresh environment (elana-magic {elana_magic.__version__}, torch {torch.__version__})')"
