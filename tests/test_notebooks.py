"""The teaching notebooks in notebooks/ execute top to bottom in a real Jupyter kernel (CPU, no network)."""

from __future__ import annotations

import pathlib
import sys

import pytest

NOTEBOOKS = sorted(pathlib.Path(__file__).resolve().parent.parent.joinpath("notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    nb = nbformat.read(path, as_version=4)
    # run in the notebook's own folder, as Jupyter and Binder do (notebooks read ../benchmarks/results)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name=NATIVE_KERNEL_NAME, resources={"metadata": {"path": str(path.parent)}}
    )
    # the kernel must be this interpreter (the venv), not whatever python3 a kernelspec names
    client.kernel_manager_class = _this_python_kernel_manager()
    client.execute()
    errors = [
        out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"


def _this_python_kernel_manager():
    from jupyter_client.manager import KernelManager

    class ThisPythonKernelManager(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]

    return ThisPythonKernelManager
