"""The shell command takes grids: several --batch / --prompt-len values, written as JSON and CSV."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys


def test_grid_from_a_real_shell_as_json_and_csv(tmp_path):
    out_csv = tmp_path / "grid.csv"
    argv = [sys.executable, "-m", "elana_magic", "random:tiny-llama", "--ttft", "--tpot", "--ttlt",
            "--batch", "1", "2", "--prompt-len", "8", "16", "--gen-len", "3", "--warmup", "0", "--repeats", "2",
            "--min-time", "0", "--no-energy", "--json", "--csv", str(out_csv)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    grid = json.loads(run.stdout)["latency"]
    assert [(c["batch"], c["prompt_len"]) for c in grid["cells"]] == [(1, 8), (2, 8), (1, 16), (2, 16)]
    assert all(c["status"] == "ok" and c["tpot_ms"] and c["ttft_ms"] for c in grid["cells"])
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {"batch", "prompt_len", "ttft_ms", "tpot_ms", "peak_memory_bytes"} <= set(rows[0])


def test_grid_with_a_prompt_is_one_line(capsys):
    from elana_magic import cli

    try:
        cli.main(["random:tiny-llama", "--ttft", "--batch", "1", "2", "--prompt", "hi", "--no-energy"])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prompt sets one prompt length" in err[0]
