#!/usr/bin/env bash
# Builds a fresh virtual environment from binder/ alone, as mybinder.org does (pip install -r
# binder/requirements.txt, then binder/postBuild), and runs notebooks/01-quickstart.ipynb in it.
# Exit 0 when every cell ran without an error. The environment goes to $BINDER_ENV (default: a
# temporary folder, removed afterwards); pip's cache is reused, so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
NOTEBOOK=${1:-notebooks/01-quickstart.ipynb}
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
python - "$REPO/$NOTEBOOK" <<'PY'
import pathlib, sys

import nbclient, nbformat
from jupyter_client.manager import KernelManager


class EnvKernel(KernelManager):  # the environment's own python, whatever kernelspecs the machine has
    def format_kernel_cmd(self, extra_arguments=None):
        return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]


path = pathlib.Path(sys.argv[1])
nb = nbformat.read(path, as_version=4)
client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                 resources={"metadata": {"path": str(path.parent)}})
client.kernel_manager_class = EnvKernel
client.execute()
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
if errors:
    sys.exit(f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}")
import elana_magic, torch
print(f"binder check: {path.name} ran in a fresh environment (elana-magic {elana_magic.__version__}, torch {torch.__version__})")
PY
