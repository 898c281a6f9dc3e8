"""The Binder environment: binder/ alone builds a fresh virtual environment in which every notebook runs,
each kernel within the 2 GB a mybinder.org session has (scripts/binder_check.sh, scripts/run_notebooks.py)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LIMIT_GB = 2.0


@pytest.mark.slow
def test_every_notebook_runs_in_the_binder_environment_within_2_gb(tmp_path, capsys):
    # minutes the first time (torch's wheel), then the notebooks' own time
    peaks = tmp_path / "peaks.json"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "binder_check.sh")], capture_output=True, text=True,
                          timeout=3600, env={**os.environ, "BINDER_PEAKS": str(peaks),
                                             "BINDER_LIMIT_GB": str(LIMIT_GB)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("binder check:")]
    with capsys.disabled():  # the peaks belong in the CI log
        print("\n" + "\n".join(lines))
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "ran in a fresh environment" in done.stdout
    results = json.loads(peaks.read_text())["notebooks"]
    assert [r["notebook"] for r in results] == [p.name for p in NOTEBOOKS]
    for r in results:
        assert r["error"] is None and 0 < r["peak_bytes"] <= LIMIT_GB * 1e9, r


def test_the_memory_watch_ends_a_kernel_past_its_limit(tmp_path):
    """The stand-in for Binder's limit can fail: a notebook that holds 300 MB under a 0.2 GB limit dies."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import sys

    path = tmp_path / "big.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\nx = bytearray(300_000_000)\ntime.sleep(1)")]
    nbformat.write(nb, path)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--limit-gb", "0.2",
                           "--json", str(tmp_path / "r.json"), str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((tmp_path / "r.json").read_text())["notebooks"][0]
    assert "passed 0.2 GB" in result["error"] and result["peak_bytes"] > 0.2e9, result
