"""The Binder environment: binder/ alone builds a fresh virtual environment that runs the quickstart."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_binder_environment_runs_the_quickstart():
    # minutes the first time (torch's wheel), about one with pip's cache warm
    done = subprocess.run(["bash", str(ROOT / "scripts" / "binder_check.sh")], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "ran in a fresh environment" in done.stdout
