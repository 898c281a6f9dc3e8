"""%elana_profile / %%elana_profile through the real IPython shell, on CPU with a tiny Llama."""

from __future__ import annotations

import gzip
import json
import os

import pytest
import torch
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from elana_magic.profile import ProfileReport, profile_block, profile_phase, profiler_running


@pytest.fixture(autouse=True)
def profiler_stopped():
    yield
    assert not profiler_running(), "a torch profiler was left running"


def _traces(folder) -> list[str]:
    return [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if ".pt.trace.json" in f]


def _events(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        return json.load(fh)["traceEvents"]


def test_ttft_writes_complete_events_and_op_table(ip, tiny_llama, tmp_path):
    ip.user_ns["m"] = tiny_llama
    rep = ip.run_line_magic("elana_profile", f"m --phase ttft --prompt-len 16 --out {tmp_path} -o -q")
    assert isinstance(rep, ProfileReport)
    (path,) = _traces(tmp_path)
    assert rep.trace_path == path and path.startswith(str(tmp_path))
    complete = [e for e in _events(path) if e.get("ph") == "X"]
    assert complete and all("ts" in e and "dur" in e for e in complete)
    names = {e["name"] for e in complete}
    assert {"elana:prefill[0]", "elana:prefill[1]", "elana:prefill[2]"} <= names
    assert any(n.startswith("aten::") for n in names)
    d = rep.to_dict()
    assert d["phase"] == "ttft" and d["engine"] == "eager" and d["prompt_len"] == 16
    assert d["op_table"] and {"name", "count", "total_us", "self_us", "mean_us", "share"} <= set(d["op_table"][0])
    assert d["kernel_table"] == [] and d["busy_idle"] is None
    assert abs(sum(r["share"] for r in d["breakdown"]) - 1) < 1e-6
    assert d["overhead"]["unprofiled_s"] > 0 and d["overhead"]["profiled_s"] > 0
    assert any("no GPU activity" in n for n in d["notes"])
    json.loads(rep.to_json())
    assert len(rep.to_dataframe()) == len(d["op_table"])


def test_tpot_annotates_each_decode_step(ip, tiny_llama, tmp_path):
    ip.user_ns["m"] = tiny_llama
    with capture_output() as cap:
        out = ip.run_line_magic("elana_profile", f"m --phase tpot --prompt-len 8 --gen-len 6 --steps 4 "
                                                 f"--out {tmp_path} --label dec -q -v rep")
    assert out is None and cap.stdout == "" and not cap.outputs
    rep = ip.user_ns["rep"]
    assert [s["name"] for s in rep.steps] == [f"elana:decode_step[{i}]" for i in range(4)]
    assert rep.step_time["steps"] == 4 and rep.step_time["cpu_mean_us"] > 0
    assert os.path.basename(rep.trace_path).startswith("dec-")


def test_ttlt_gzip_nests_prefill_and_steps(ip, tiny_llama, tmp_path):
    ip.user_ns["m"] = tiny_llama
    rep = ip.run_line_magic("elana_profile", f"m --phase ttlt --prompt-len 8 --gen-len 3 --gzip --out {tmp_path} -o -q")
    assert rep.trace_path.endswith(".pt.trace.json.gz")
    names = [e["name"] for e in _events(rep.trace_path) if e.get("cat") == "user_annotation"]
    assert {"elana:request[0]", "elana:prefill", "elana:decode_step[0]", "elana:decode_step[1]"} <= set(names)


def test_default_folder_is_elana_traces_label(ip, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ip.user_ns["m"] = tiny_llama
    rep = ip.run_line_magic("elana_profile", "m --phase ttft --prompt-len 8 --steps 1 -o -q")
    assert os.path.dirname(rep.trace_path) == str(tmp_path / "elana_traces" / "m-ttft")
    assert os.path.basename(rep.trace_path).startswith("m-ttft-")
    # shown relative to the working folder (a saved notebook holds no absolute folder); the attribute stays absolute
    shown = os.path.relpath(rep.trace_path)
    assert shown.startswith(os.path.join("elana_traces", "m-ttft")) and f"trace: {shown}\n" in rep.to_text()
    assert f"<code>{shown}</code>" in rep.to_html() and os.path.isabs(rep.trace_path)


def test_display_shows_path_perfetto_note_and_timeline(ip, tiny_llama, tmp_path):
    ip.user_ns["m"] = tiny_llama
    with capture_output() as cap:
        ip.run_line_magic("elana_profile", f"m --phase ttft --prompt-len 8 --steps 1 --out {tmp_path}")
    (shown,) = cap.outputs
    html, text = shown.data["text/html"], shown.data["text/plain"]
    assert "ui.perfetto.dev" in html and "src='data:image/png;base64," in html and str(tmp_path) in html
    assert "Top CPU ops" in text and "ui.perfetto.dev" in text


def test_model_state_restored(ip, tiny_llama, tmp_path):
    tiny_llama.train()
    try:
        ip.user_ns["m"] = tiny_llama
        before = {k: v.clone() for k, v in tiny_llama.state_dict().items()}
        ip.run_line_magic("elana_profile", f"m --phase tpot --prompt-len 8 --gen-len 4 --out {tmp_path} -q")
        assert tiny_llama.training
        after = tiny_llama.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
    finally:
        tiny_llama.eval()


@pytest.mark.parametrize("line, match", [
    ("m --phase decode", "invalid choice"),
    ("m --phase ttft --label a/b", "path separator"),
    ("m --phase ttft --label ..", "path separator"),
    ("m --steps 0", "--steps takes a whole number >= 1, e.g. --steps 16; got '0'"),
    ("m --batch -1", "--batch takes a whole number >= 1, e.g. --batch 8; got '-1'"),
    ("m -v 1abc", "-v takes a Python variable name"),
    ("m --phase tpot --gen-len 4 --steps 5", "need --gen-len of at least 6"),
    ("m --top 0", "--top takes a whole number >= 1, e.g. --top 20; got '0'"),
    ("", "needs a model"),
    ("nothing_here", "not defined"),
    ("'a string'", "no folder 'a string'"),  # quoted: a folder or hub id, as in every magic
    ("x", "not a torch.nn.Module"),
])
def test_bad_input_is_one_line_usage_error(ip, tiny_llama, tmp_path, line, match):
    ip.user_ns.update(m=tiny_llama, x=42)
    with pytest.raises(UsageError, match=match) as err:
        ip.run_line_magic("elana_profile", f"{line} --out {tmp_path / 'o'}")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_unwritable_out_is_usage_error(ip, tiny_llama, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    ip.user_ns["m"] = tiny_llama
    with pytest.raises(UsageError, match="not a directory"):
        ip.run_line_magic("elana_profile", f"m --phase ttft --prompt-len 8 --out {blocker / 'traces'}")
    with pytest.raises(UsageError, match="not a directory"):
        ip.run_cell_magic("elana_profile", f"--out {blocker}", "1 + 1")


@pytest.mark.parametrize("error, match", [
    (RuntimeError("boom inside the kernel"), "failed under the profiler .*boom inside the kernel"),
    (KeyboardInterrupt(), "interrupted"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "^out of memory on cpu at batch 1 x 136"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 1073741824 bytes"), "^out of memory on cpu at batch 1 x 136"),
])
def test_failure_under_the_profiler_leaves_nothing(ip, tiny_llama, tmp_path, monkeypatch, error, match):
    # ttft with 1 step: call 1 = warm-up prefill, 2 = the unprofiled prefill, 3 = the profiled prefill
    calls = []
    forward = tiny_llama.forward

    def failing_forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise error
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_llama, "forward", failing_forward)
    tiny_llama.train()
    try:
        ip.user_ns["m"] = tiny_llama
        with pytest.raises(UsageError, match=match):
            ip.run_line_magic("elana_profile", f"m --phase ttft --prompt-len 8 --steps 1 --out {tmp_path / 'o'}")
        assert len(calls) == 3
        assert not profiler_running()
        assert not (tmp_path / "o").exists()
        assert tiny_llama.training  # state restored by the session
    finally:
        tiny_llama.eval()


def test_cell_magic_profiles_the_cell(ip, tmp_path):
    cell = "import torch\nx = torch.ones(32, 32) @ torch.ones(32, 32)\ny = x.sum()"
    rep = ip.run_cell_magic("elana_profile", f"--out {tmp_path} --label my-cell -o -q", cell)
    assert float(ip.user_ns["y"]) == 32 * 32 * 32  # the cell ran in the notebook's namespace
    assert rep.phase is None and rep.label == "my-cell"
    names = {e["name"] for e in _events(rep.trace_path) if e.get("ph") == "X"}
    assert "elana:my-cell" in names and "aten::mm" in names
    assert any(r["name"] == "aten::mm" and r["kind"] == "matmul" for r in rep.op_table)


@pytest.mark.parametrize("line, cell, match", [
    ("m", "1", "takes no 'm'"),
    ("--phase tpot", "1", "takes no '--phase'"),
    ("", "   ", "the cell is empty"),
    ("--label x/y", "1", "path separator"),
])
def test_cell_magic_bad_input(ip, tmp_path, line, cell, match):
    with pytest.raises(UsageError, match=match):
        ip.run_cell_magic("elana_profile", f"{line} --out {tmp_path / 'o'}", cell)
    assert not (tmp_path / "o").exists()


def test_cell_that_raises_writes_nothing(ip, tmp_path):
    with capture_output():
        with pytest.raises(UsageError, match="the cell raised ZeroDivisionError"):
            ip.run_cell_magic("elana_profile", f"--out {tmp_path / 'o'}", "1 / 0")
    assert not profiler_running()
    assert not (tmp_path / "o").exists()


def test_interrupted_cell_stops_the_profiler(ip, tmp_path):
    with capture_output():
        with pytest.raises(UsageError, match="interrupted"):
            ip.run_cell_magic("elana_profile", f"--out {tmp_path / 'o'}", "raise KeyboardInterrupt")
    assert not profiler_running()
    assert not (tmp_path / "o").exists()


def test_profile_block_api_with_steps(tmp_path):
    lin = torch.nn.Linear(16, 16)
    with profile_block(out=str(tmp_path), label="api") as prof:
        for i in range(3):
            with prof.step(f"decode_step[{i}]"):
                lin(torch.ones(4, 16))
    rep = prof.report
    assert [s["name"] for s in rep.steps] == ["elana:api"] + [f"elana:decode_step[{i}]" for i in range(3)]
    assert rep.step_time["steps"] == 3
    assert _traces(tmp_path) == [rep.trace_path]


def test_profile_block_error_propagates_and_stops(tmp_path):
    with pytest.raises(ValueError, match="inside"):
        with profile_block(out=str(tmp_path / "o")):
            raise ValueError("inside")
    assert not profiler_running()
    assert not (tmp_path / "o").exists()


def test_nested_profiler_refused(tmp_path):
    with profile_block(out=str(tmp_path)):
        with pytest.raises(ValueError, match="already running"):
            with profile_block(out=str(tmp_path)):
                pass


def test_refused_inside_an_energy_window(ip, tiny_llama, tmp_path):
    import threading

    stop = threading.Event()
    sampler = threading.Thread(target=stop.wait, name="elana-sampler")  # what an open window runs
    sampler.start()
    try:
        ip.user_ns["m"] = tiny_llama
        with pytest.raises(UsageError, match="an energy window is open"):
            ip.run_line_magic("elana_profile", f"m --phase ttft --prompt-len 8 --out {tmp_path / 'o'}")
        with pytest.raises(UsageError, match="an energy window is open"):
            ip.run_cell_magic("elana_profile", f"--out {tmp_path / 'o'}", "1 + 1")
    finally:
        stop.set()
        sampler.join()
    assert not (tmp_path / "o").exists()


def test_profile_phase_plain_api(tiny_llama, tmp_path):
    rep = profile_phase(tiny_llama, "tpot", prompt_len=8, gen_len=5, out=str(tmp_path))
    assert rep.settings["steps"] == 4  # default 16, capped at gen_len - 1
    assert rep.to_dict()["steps"] and rep.engine == "eager"
    with pytest.raises(ValueError, match="unknown phase"):
        profile_phase(tiny_llama, "prefill", out=str(tmp_path))


def test_profiler_usdt_lines_are_not_shown(capfd):
    """Kineto writes `USDT: ... profiler_start/stop` to fd 2 from C++; other stderr lines pass through."""
    import os

    from elana_magic.profile.capture import without_usdt_lines

    def noisy():
        os.write(2, b"USDT:2026-12-01 21:07:24 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"a real warning\n")
        return 7

    assert without_usdt_lines(noisy) == 7
    err = capfd.readouterr().err
    assert "USDT" not in err and "a real warning" in err
