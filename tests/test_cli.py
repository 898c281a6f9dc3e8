"""The elana-magic shell command: tables, JSON, phases, bad input."""

from __future__ import annotations

import json
import os
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
    (["random:tiny-llama", "--tpot", "--gen-len", "0"], "--gen-len takes whole numbers >= 1, e.g. --gen-len 32 128; got '0'"),
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


def _run(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "elana_magic", *argv], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A local model folder as from_pretrained reads it: a tiny random Llama, no tokenizer files."""
    from elana_magic.models import random_model

    folder = tmp_path_factory.mktemp("tiny-llama")
    random_model("tiny-llama").save_pretrained(folder)
    return folder


def test_elana_flags_on_a_local_folder_report_size_ttft_tpot_ttlt(model_folder, tmp_path):
    """ELANA's exact flags, as its users type them, in a subprocess."""
    out = _run(str(model_folder), "--size", "--ttft", "--tpot", "--ttlt", "--energy", "--cache_graph",
               "--batch_size", "1", "--prompt_len", "16", "--gen_len", "4", "--repeats", "2", "--ngpus", "1",
               "--model_name", "tiny", "--device_map", "cpu", "--log_level", "INFO",
               "--json", str(tmp_path / "run.json"), "--csv", str(tmp_path / "run.csv"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    text = out.stdout
    assert "== size: " in text and "KV cache" in text and "model + cache" in text
    for phase in ("TTFT (prefill)", "TPOT (decode step)", "TTLT (request)"):
        assert phase in text
    assert "note: no GPU, so CPU-sized defaults" in text  # the options not given (--warmup, --min-time, ...)
    data = json.loads((tmp_path / "run.json").read_text())
    assert set(data) == {"model", "size", "latency"}
    latency = data["latency"]
    assert latency["batch"] == 1 and latency["prompt_len"] == 16 and latency["gen_len"] == 4
    assert latency["label"] == "tiny" and latency["cuda_graph"] is False  # no CUDA here: eager, with a note
    for key in ("ttft_ms", "tpot_ms", "ttlt_ms"):
        assert latency[key]["n"] >= 2 and latency[key]["median"] > 0
    assert data["size"]["params_bytes"] > 0 and data["size"]["rows"][0]["kv_cache_bytes"] > 0
    csv = (tmp_path / "run.csv").read_text().splitlines()
    header = csv[0].split(",")
    assert header[:2] == ["measurement", "model"] or header[:2] == ["model", "measurement"]
    assert {line.split(",")[header.index("measurement")] for line in csv[1:]} == {"size", "latency"}


def test_json_to_stdout_keeps_stdout_json(capsys):
    argv = ["random:tiny-llama", "--ttft", "--json", "--prompt-len", "8", "--gen-len", "2", "--repeats", "2",
            "--warmup", "0", "--min-time", "0", "--no-energy"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["latency"]["ttft_ms"]["n"] >= 2


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_model_that_cannot_be_loaded_is_bad_input(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{ not json")
    for argv in ([str(tmp_path), "--ttft"], [str(tmp_path / "missing"), "--ttft"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        line = _one_error_line(capsys)
        assert line.startswith("elana-magic: ") and ("could not load" in line or "no folder" in line)


def test_a_failed_measurement_exits_1_with_one_line_and_a_traceback_only_with_debug(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("the kernel fell over\nsecond line")

    monkeypatch.setattr("elana_magic.latency.measure_latency", broken)
    argv = ["random:tiny-llama", "--ttft", "--prompt-len", "8", "--gen-len", "2"]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 1
    assert _one_error_line(capsys) == ("elana-magic: the measurement failed: RuntimeError: the kernel fell over "
                                       "(--log_level DEBUG shows the traceback)")
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--log_level", "DEBUG"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1].endswith("fell over")


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--json", "/no/such/dir/out.json"], "--json '/no/such/dir/out.json': give a file in an existing folder"),
    (["--ttft", "--prompt", "hi"], "--prompt needs a tokenizer"),
    (["--device_map", "auto"], "--device_map 'auto' needs a folder or hub id"),
])
def test_more_bad_input_is_one_line_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["random:tiny-llama", "--prompt-len", "8", "--gen-len", "2", *argv])
    assert exc.value.code == 2
    assert message in _one_error_line(capsys)


def test_a_busy_cpu_gets_a_hint(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (12.0, 11.0, 10.0))
    assert "load 12.0 on 2 cores" in cli._busy_cpu_note() and "OMP_NUM_THREADS=1" in cli._busy_cpu_note()
    monkeypatch.setattr(cli.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert cli._busy_cpu_note() is None


# -- issue 22: the rest of the new user's list ------------------------------------------------------


def test_size_with_elanas_prompt_len_sizes_the_cache_at_it(tmp_path, capsys):
    """ELANA reports the cache for the batch and prompt length given: so does --size with --prompt_len."""
    path = tmp_path / "run.json"
    assert cli.main(["random:tiny-llama", "--size", "--batch_size", "1", "--prompt_len", "512", "--json",
                     str(path)]) == 0
    rows = json.loads(path.read_text())["size"]["rows"]
    assert [(r["batch"], r["seq_len"]) for r in rows] == [(1, 512)]
    assert cli.main(["random:tiny-llama", "--size", "--prompt_len", "512", "--seq-len", "64", "--json",
                     str(path)]) == 0  # --seq-len, when given, wins
    assert {r["seq_len"] for r in json.loads(path.read_text())["size"]["rows"]} == {64}


def test_torch_profile_with_several_gpus_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["random:tiny-llama", "--torch-profile", "--ngpus", "2", "--batch_size", "2"])
    assert exc.value.code == 2
    assert "--torch-profile profiles one process" in _one_error_line(capsys)


@pytest.mark.parametrize("flag", ["--json", "--csv"])
def test_an_output_that_cannot_be_written_is_refused_before_measuring(flag, tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "run_size", lambda *a: ran.append(1))
    for path in ("/proc/elana-magic-run.out", str(tmp_path)):  # a folder no file can be made in; a folder
        with pytest.raises(SystemExit) as exc:
            cli.main(["random:tiny-llama", "--size", flag, path])
        assert exc.value.code == 2
        assert f"{flag} {path!r}" in _one_error_line(capsys)
    assert ran == [] and not os.path.exists("/proc/elana-magic-run.out")
