"""Saved reports carry a format version; reading one back checks it against its kind, line by line."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import elana_magic
from elana_magic.core.envelope import FORMAT_VERSION, ReportFileError, load_report
from elana_magic.latency import measure_latency

FAST = dict(prompt_len=4, gen_len=3, warmup=0, repeats=2, min_time=0.0, progress=False, energy=False)


@pytest.fixture(scope="module")
def latency_dict(tiny_llama) -> dict:
    return measure_latency(tiny_llama, label="good", **FAST).to_dict()


def test_every_saved_report_and_history_line_has_a_format_version(latency_dict, tmp_path):
    assert latency_dict["format_version"] == FORMAT_VERSION
    assert "step_latencies_ms" not in latency_dict  # the old alias of tpot_samples_ms is gone
    old = {k: v for k, v in latency_dict.items() if k != "format_version"}  # a file from before versions
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_report(tmp_path / "old.json").to_dict()["format_version"] == FORMAT_VERSION


def _history_file(tmp_path, latency_dict) -> str:
    bad = dict(latency_dict, ttft_ms="abc", label="bad")
    newer = dict(latency_dict, format_version=FORMAT_VERSION + 1, label="newer",
                 environment=dict(latency_dict["environment"], elana_magic="9.0.0"))
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in (latency_dict, bad, newer)) + "\n")
    return str(path)


def test_history_load_keeps_good_lines_and_names_the_others(ip, tmp_path, latency_dict):
    path = _history_file(tmp_path, latency_dict)
    with capture_output() as cap:
        ip.run_line_magic("elana_history", f"--load {path}")
    refused = cap.stderr.strip().splitlines()
    assert "loaded 1 report(s)" in cap.stdout and len(refused) == 2, cap.stderr
    assert f"{path} line 2" in refused[0] and "'ttft_ms'" in refused[0] and "str 'abc'" in refused[0]
    assert f"{path} line 3" in refused[1]
    assert f"saved by elana-magic 9.0.0 (report format {FORMAT_VERSION + 1}); this is {elana_magic.__version__}" \
        in refused[1]
    assert "Traceback" not in cap.stdout + cap.stderr
    h = ip.run_line_magic("elana_history", "-o -q")  # the history keeps working
    assert [e.label for e in h.entries] == ["good"] and "good" in h.to_text() and len(h.to_dataframe()) == 1
    assert any("line 2" in n for n in h.notes)
    with capture_output() as cap:
        ip.run_line_magic("elana_history", "")
    shown = " ".join(str(o.data.get("text/plain", "")) for o in cap.outputs)
    assert "good" in shown and "Traceback" not in cap.stdout + cap.stderr
    again = tmp_path / "again.jsonl"
    ip.run_line_magic("elana_history", f"--save {again} -q")
    assert [json.loads(line)["format_version"] for line in again.read_text().splitlines()] == [FORMAT_VERSION]


@pytest.mark.parametrize("change, field", [
    ({"ttft_ms": 12.5}, "ttft_ms"), ({"tpot_samples_ms": [1.0, "x"]}, "tpot_samples_ms"),
    ({"batch": "8"}, "batch"), ({"notes": "one"}, "notes")])
def test_load_report_names_the_bad_field(tmp_path, latency_dict, change, field):
    (tmp_path / "r.json").write_text(json.dumps(dict(latency_dict, **change)))
    with pytest.raises(ReportFileError, match=f"r.json'?: latency report: field '{field}'") as info:
        load_report(tmp_path / "r.json")
    assert "\n" not in str(info.value)


def test_a_size_report_without_its_figures_is_refused(tmp_path, latency_dict):
    (tmp_path / "s.json").write_text(json.dumps({"kind": "size", "model": "m"}))
    with pytest.raises(ReportFileError, match="size report: field 'source' is missing"):
        load_report(tmp_path / "s.json")


def test_compare_with_a_malformed_report_file_is_one_line(ip, tmp_path, latency_dict):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(latency_dict))
    bad.write_text(json.dumps({"kind": "size", "model": "m", "source": "s", "params_bytes": "many"}))
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("elana_compare", f"{good} {bad}")
    message = str(info.value)
    assert "\n" not in message and "bad.json" in message and "'params_bytes'" in message


@pytest.mark.parametrize("magic, line", [
    ("elana_compare", "base 'x"), ("elana_compare", 'a "b'), ("elana_history", "--load 'x"),
    ("elana_history", '--save "x')])
def test_unbalanced_quotes_are_one_line(ip, magic, line):
    with pytest.raises(UsageError, match="No closing quotation") as info:
        ip.run_line_magic(magic, line)
    assert "\n" not in str(info.value)


# -- what the notebook must not lose, and what a comparison must not claim ----------------------------
@pytest.mark.parametrize("line, says", [
    ("m --seq-len 16 -q -v m", "-v m would replace 'm'"),
    ("m --seq-len 16 -q -v print", r"got 'print' \(a Python builtin\)"),
    ("m --seq-len 16 -q -v len", r"got 'len' \(a Python builtin\)")])
def test_var_that_would_break_the_notebook_is_refused(ip, tiny_llama, line, says):
    ip.user_ns["m"] = tiny_llama
    with pytest.raises(UsageError, match=says) as info:
        ip.run_line_magic("elana_size", line)
    assert "\n" not in str(info.value) and ip.user_ns["m"] is tiny_llama and "print" not in ip.user_ns


def test_latency_var_naming_a_model_of_a_pair_is_refused(ip, tiny_llama):
    ip.user_ns.update(a=tiny_llama, b=tiny_llama)
    with pytest.raises(UsageError, match="-v b would replace 'b'"):
        ip.run_line_magic("elana_latency", "a b --tpot -v b -q")
    assert ip.user_ns["b"] is tiny_llama


def test_a_report_compared_with_itself_is_refused(ip, tiny_llama, tmp_path):
    ip.user_ns["m"] = tiny_llama
    ip.run_line_magic("elana_size", "m --seq-len 16 --no-check -v rep -q")  # labelled "m"
    path = tmp_path / "base.json"
    ip.user_ns["rep"].save(str(path))
    for line in ("m m", "rep 0", f"0 {path}"):
        with pytest.raises(UsageError, match="are the same report"):
            ip.run_line_magic("elana_compare", line)


def test_fingerprint_tells_different_weights_apart(tiny_llama):
    import copy

    import torch

    from elana_magic.core.compare import compare
    from elana_magic.core.fingerprint import model_fingerprint
    from elana_magic.size import measure_size

    tuned = copy.deepcopy(tiny_llama)
    with torch.no_grad():
        for p in tuned.parameters():
            p.mul_(1.01)
    a, b = model_fingerprint(tiny_llama), model_fingerprint(tuned)
    assert a["hash"] == b["hash"] and a["weights"] != b["weights"]
    assert model_fingerprint(copy.deepcopy(tiny_llama))["weights"] == a["weights"]
    reports = [measure_size(m, seq_len=[16], cross_check=False, label=lab)
               for m, lab in ((tiny_llama, "base"), (tuned, "tuned"), (copy.deepcopy(tiny_llama), "copy"))]
    assert "the same structure, different weights" in compare(reports[:2]).to_text()
    assert "the same model (equal fingerprints" in compare([reports[0], reports[2]]).to_text()


def test_history_load_reads_a_single_saved_report(ip, tmp_path, tiny_llama):
    from elana_magic.size import measure_size

    path = measure_size(tiny_llama, seq_len=[16], cross_check=False, label="one").save(str(tmp_path / "one.json"))
    with capture_output() as cap:
        ip.run_line_magic("elana_history", f"--load {path}")
    assert "loaded 1 report(s)" in cap.stdout and cap.stderr == ""
    assert [e.label for e in ip.run_line_magic("elana_history", "-o -q").entries] == ["one"]


def test_a_fit_answer_in_the_history_reads_back(ip, tiny_llama, tmp_path):
    """%elana_size --max-batch's answer is saved with its kind, so --load keeps it (it was refused: no kind)."""
    ip.user_ns["m"] = tiny_llama
    ip.run_line_magic("elana_size", "m --max-batch --seq-len 64 -q")
    path = tmp_path / "fit.jsonl"
    ip.run_line_magic("elana_history", f"--save {path} -q")
    ip.run_line_magic("elana_history", "--clear -q")
    with capture_output() as cap:
        ip.run_line_magic("elana_history", f"--load {path}")
    assert "loaded 1 report(s)" in cap.stdout and cap.stderr == ""
    back = ip.run_line_magic("elana_history", "-o -q")[0]
    assert back.kind == "size-fit" and back.mode == "batch" and "largest batch at seq_len 64" in back.to_text()
