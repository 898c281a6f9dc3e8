"""%elana_size through a real IPython shell: the table, -o/-v/-q, quoted folders, one-line errors."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from elana_magic.models import preset_config
from elana_magic.size import SizeReport

CONTRACT = ("params_bytes", "buffers_bytes", "model_bytes", "rows")
ROW = ("batch", "seq_len", "kv_cache_bytes", "ssm_cache_bytes", "cache_bytes")


@pytest.fixture
def shell(ip, tiny_llama):
    ip.user_ns["model"] = tiny_llama
    return ip


def test_prints_a_table(shell):
    with capture_output() as cap:
        result = shell.run_line_magic("elana_size", "model --batch 1 128 --seq-len 1024 2048")
    assert result is None
    assert len(cap.outputs) == 1
    text = cap.outputs[0].data["text/plain"]
    assert "KV cache" in text and "model + cache" in text and "MB" in text
    for b, seq in [(1, 1024), (1, 2048), (128, 1024), (128, 2048)]:
        assert any(line.split()[:2] == [str(b), str(seq)] for line in text.splitlines())
    assert "<table" in cap.outputs[0].data["text/html"]


def test_o_returns_the_report(shell):
    with capture_output():
        report = shell.run_line_magic("elana_size", "model --batch 1 128 --seq-len 1024 2048 -o")
    assert isinstance(report, SizeReport)
    data = report.to_dict()
    assert all(k in data for k in CONTRACT)
    assert len(data["rows"]) == 4 and all(k in row for row in data["rows"] for k in ROW)
    assert data["rows"][0]["kv_cache_bytes"] == 2 * 2 * 2 * 16 * 1024 * 4  # K+V, 2 layers, 2 kv heads, head_dim 16
    assert "model" in data["model"]  # labelled with the expression the user typed


def test_v_stores_and_q_prints_nothing(shell):
    with capture_output() as cap:
        assert shell.run_line_magic("elana_size", "model -v r -q") is None
    assert cap.outputs == [] and cap.stdout == ""
    assert isinstance(shell.user_ns["r"], SizeReport)
    assert [row["seq_len"] for row in shell.user_ns["r"].rows] == [1024, 2048]  # the magic's default grid


def test_expression_gib_and_cache_dtype(shell):
    shell.user_ns["models"] = {"a": shell.user_ns["model"]}
    with capture_output():
        report = shell.run_line_magic("elana_size", "models['a'] --seq-len 64 --gib --cache-dtype bf16 -o")
    assert report.cache_dtype == "bfloat16" and report.binary
    assert "KiB" in report.to_text()


def test_quoted_folder_and_preset(shell, tmp_path):
    folder = tmp_path / "my model"  # a space in the path: quoting keeps it whole
    preset_config("llama-3.2-1b", dtype="bfloat16").save_pretrained(folder)
    with capture_output():
        report = shell.run_line_magic("elana_size", f'"{folder}" --batch 1 8 --seq-len 4096 -o')
    assert report.to_dict()["param_count"] == 1_235_814_400
    assert "meta" in report.source and len(report.rows) == 2
    with capture_output():
        mamba = shell.run_line_magic("elana_size", "'random:mamba2-1.3b' -o")
    assert mamba.rows[0]["ssm_cache_bytes"] > 0 and mamba.rows[0]["kv_cache_bytes"] == 0


@pytest.mark.parametrize("line, message", [
    ("", "needs a model"),
    ("nope", "name 'nope' is not defined"),
    ("42", "is an int, not a torch.nn.Module"),
    ("'/no/such/folder'", "no folder '/no/such/folder'"),
    ("model --batch 0", "--batch takes whole numbers >= 1, e.g. --batch 1 8; got '0'"),
    ("model --seq-len 1024 -5", "--seq-len takes whole numbers >= 1, e.g. --seq-len 1024 8192; got '-5'"),
    ("model --batch x", "--batch takes whole numbers >= 1, e.g. --batch 1 8; got 'x'"),
    ("model --cache-dtype float7", "unknown dtype 'float7'"),
    ("model --bogus", "unrecognized arguments"),
    ("model -v 1x", "-v takes a Python variable name, e.g. -v rep; got '1x'"),
    ("model -v class", "-v takes a Python variable name, e.g. -v rep; got 'class' \\(a Python keyword\\)"),
    ("'random:nope'", "unknown preset 'nope'"),
])
def test_bad_input_is_one_line(shell, line, message):
    with pytest.raises(UsageError, match=message) as err:
        shell.run_line_magic("elana_size", line)
    assert "\n" not in str(err.value)


def test_folder_without_config_and_unknown_arch(shell, tmp_path):
    with pytest.raises(UsageError, match="has no config.json") as err:
        shell.run_line_magic("elana_size", f"'{tmp_path}'")
    assert "\n" not in str(err.value)
    (tmp_path / "config.json").write_text('{"model_type": "no-such-arch"}')
    with pytest.raises(UsageError, match="transformers can't read the config") as err:
        shell.run_line_magic("elana_size", f"'{tmp_path}'")
    assert "\n" not in str(err.value)


def test_unreachable_hub_id_is_one_line(shell, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="is not in the local cache and the Hub is offline") as err:
        shell.run_line_magic("elana_size", "'meta-llama/Llama-3.1-8B'")
    assert "\n" not in str(err.value)


def test_usage_error_shows_no_traceback(shell):
    with capture_output() as cap:
        shell.run_cell("%elana_size not_defined_anywhere")
    assert "UsageError" in cap.stderr and "Traceback" not in cap.stderr + cap.stdout


def test_help(shell):
    doc = shell.find_line_magic("elana_size").__doc__
    for option in ("--batch", "--seq-len", "--gib", "--cache-dtype", "-o", "-v", "-q"):
        assert option in doc
