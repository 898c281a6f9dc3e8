"""The elana-magic shell command: tables, JSON, phases, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from elana_magic import cli


def test_size_table_on_a_preset(capsys):
    assert cli.main(["random:tiny-llama", "--size", "--batch", "1", "4", "--seq-len", "64", "128"]) == 0
    out = capsys.readouterr().out
    assert "== size: random:tiny-llama" in out
    assert "KV cache" in out and "model + cache" in out
    assert sum(1 for line in out.splitlines() if line.split()[:2] in (["1", "64"], ["4", "128"])) == 2


def test_no_phase_flag_runs_every_phase(capsys, tmp_path):
    argv = ["random:tiny-llama", "--seq-len", "16", "--prompt-len", "8", "--gen-len", "4", "--warmup", "1",
            "--repeats", "2", "--min-time", "0", "--no-energy", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for key in dict.fromkeys(phase.key for phase in cli.PHASES):
        assert f"== {key}:" in out
    assert "TTFT" in out and "TPOT" in out and "TTLT" in out
    assert list(tmp_path.rglob("*.json*")), "the profile phase writes a trace"


def test_latency_flags_run_one_measurement(capsys):
    argv = ["random:tiny-llama", "--ttft", "--tpot", "--json", "--prompt-len", "8", "--gen-len", "4",
            "--warmup", "1", "--repeats", "2", "--min-time", "0", "--no-energy"]
    assert cli.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"model", "latency"}
    assert data["latency"]["ttft_ms"]["n"] >= 2 and data["latency"]["tpot_ms"]["n"] >= 2
    assert data["latency"]["ttlt_ms"]["n"] == 0  # not measured


def test_json_and_gib(capsys):
    assert cli.main(["random:mamba2-1.3b", "--size", "--json", "--gib", "--seq-len", "1024", "4096"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "random:mamba2-1.3b"
    size = data["size"]
    assert size["units"].startswith("binary")
    assert [r["seq_len"] for r in size["rows"]] == [1024, 4096]
    assert size["rows"][0]["ssm_cache_bytes"] == size["rows"][1]["ssm_cache_bytes"] > 0


def test_local_folder(tmp_path, capsys):
    from elana_magic.models import preset_config

    preset_config("qwen2.5-7b", dtype="bfloat16").save_pretrained(tmp_path)
    assert cli.main([str(tmp_path), "--size", "--json", "--seq-len", "32768"]) == 0
    size = json.loads(capsys.readouterr().out)["size"]
    assert size["params_bytes"] == 2 * 7_615_616_512
    assert size["rows"][0]["kv_cache_bytes"] == 2 * 28 * 4 * 128 * 32768 * 2


@pytest.mark.parametrize("argv, message", [
    (["random:nope"], "unknown preset 'nope'"),
    (["/no/such/folder"], "no folder '/no/such/folder'"),
    (["random:tiny-llama", "--batch", "0"], "--batch takes whole numbers >= 1, e.g. --batch 1 8; got '0'"),
    (["random:tiny-llama", "--cache-dtype", "float7"], "unknown dtype"),
    (["random:tiny-llama", "--ttft", "--prompt-len", "4000"], "maximum"),
    (["random:tiny-llama", "--tpot", "--gen-len", "0"], "--gen-len takes a whole number >= 1, e.g. --gen-len 32; got '0'"),
])
def test_bad_input_exits_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "elana_magic", "random:tiny-llama", "--size", "--seq-len", "8"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "KV cache" in out.stdout


def test_help_lists_phases(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "--size" in out and "--json" in out and "--gib" in out
