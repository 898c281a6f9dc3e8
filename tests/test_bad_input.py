"""Issue 8: every bad input is one clear line and leaves nothing behind (one test per defect found).

Magics run through the real IPython shell (``ip``), the command through a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from elana_magic.models import random_model
from elana_magic.profile import analyze_trace, profile_phase

PROFILE_FAST = "--phase ttft --prompt-len 8 --gen-len 4 --steps 1 -q"
LATENCY_FAST = "--prompt-len 4 --gen-len 3 --warmup 0 --repeats 1 --min-time 0 --no-energy -q"


@pytest.fixture
def shell(ip, tiny_llama, tmp_path, monkeypatch):
    """The shell with `m` = the tiny Llama, run in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    ip.user_ns["m"] = tiny_llama
    return ip


def run_command(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elana_magic", *argv], capture_output=True, text=True,
                          cwd=cwd, stdin=subprocess.DEVNULL, timeout=240)


def one_usage_line(shell, magic: str, line: str, cell: str | None = None) -> str:
    with pytest.raises(UsageError) as info:
        if cell is None:
            shell.run_line_magic(magic, line)
        else:
            shell.run_cell_magic(magic, line, cell)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def error_lines(stderr: str) -> list[str]:
    """stderr without the command's advisory notes (a busy machine, CPU-sized defaults)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("note: ")]


def traces_in(folder) -> list[str]:
    return sorted(os.path.join(root, f) for root, _, files in os.walk(folder) for f in files)


def temp_leftovers() -> set[str]:
    return {f for f in os.listdir(tempfile.gettempdir()) if f.startswith(".elana-trace-")}


# -- 1. --out paths: quotes removed, every trace valid JSON, write failures name the path ---------------

@pytest.mark.parametrize("out, folder", [('"my traces"', "my traces"), ("'traces'", "traces"),
                                         ('"dir \'q\' \\back"', "dir 'q' \\back")])
def test_profile_out_is_unquoted_and_the_trace_is_valid_json(shell, tmp_path, out, folder):
    shell.run_line_magic("elana_profile", f"m {PROFILE_FAST} --out {out}")
    assert os.listdir(tmp_path) == [folder]
    [path] = traces_in(tmp_path / folder)
    with open(path) as f:
        assert json.load(f)["traceName"] == path
    assert analyze_trace(path).to_dict()["trace_path"] == path


def test_profile_empty_out_is_one_line_and_creates_nothing(shell, tmp_path):
    assert "--out is empty" in one_usage_line(shell, "elana_profile", f'm {PROFILE_FAST} --out ""')
    assert os.listdir(tmp_path) == []


def test_trace_under_a_folder_with_spaces_quotes_and_backslash_is_valid_json(tiny_llama, tmp_path):
    """Done when 3: json.load and analyze_trace read it; the gzipped form too; nothing left behind."""
    before = temp_leftovers()
    folder = tmp_path / 'a "double" and \'single\' quote \\ back slash ü'
    for gz in (False, True):
        report = profile_phase(tiny_llama, "ttft", prompt_len=8, gen_len=4, steps=1, out=str(folder), gzip=gz)
        path = report.to_dict()["trace_path"]
        opener = __import__("gzip").open if gz else open
        with opener(path, "rt") as f:
            assert json.load(f)["traceName"] == path
        assert analyze_trace(path).to_dict()["trace_path"] == path
    assert len(traces_in(folder)) == 2
    assert temp_leftovers() == before


def test_a_failed_trace_write_names_the_path_not_the_model(shell, tmp_path, monkeypatch):
    def fail(self, path, *args, **kwargs):
        raise RuntimeError("kineto could not write")

    monkeypatch.setattr(torch.profiler.profile, "export_chrome_trace", fail)
    before = temp_leftovers()
    text = one_usage_line(shell, "elana_profile", f"m {PROFILE_FAST} --out t")
    assert text.startswith("could not write the trace to ") and str(tmp_path / "t") in text
    assert "model failed" not in text
    assert traces_in(tmp_path) == [] and temp_leftovers() == before


# -- 2. a broken config.json, a missing folder ---------------------------------------------------------

@pytest.fixture
def broken(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    return folder


def test_size_of_a_folder_with_a_broken_config_is_one_line(shell, broken):
    assert "config.json is not valid JSON" in one_usage_line(shell, "elana_size", f'"{broken}"')


def test_command_broken_config_and_missing_folder_exit_2_with_one_line(broken, tmp_path):
    for argv in ([str(broken), "--size"], [str(tmp_path / "missing_dir"), "--ttft"], ["missing_dir", "--ttft"]):
        done = run_command(*argv, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert len(error_lines(done.stderr)) == 1 and "Traceback" not in done.stderr, done.stderr


# -- 3. %elana_latency: one line where it showed tracebacks --------------------------------------------

def test_latency_of_a_meta_model_is_one_line(shell):
    with torch.device("meta"):
        shell.user_ns["meta"] = random_model("tiny-llama")
    assert "meta device" in one_usage_line(shell, "elana_latency", f"meta {LATENCY_FAST}")


def test_latency_huge_batch_on_cpu_is_one_out_of_memory_line(shell):
    text = one_usage_line(shell, "elana_latency", f"m --batch 1000000000000 {LATENCY_FAST}")
    assert text.startswith("out of memory on cpu")


def test_latency_callable_tokenizer_without_ids_is_one_line(shell):
    shell.user_ns["tok"] = lambda text, **kwargs: [1, 2, 3]
    text = one_usage_line(shell, "elana_latency", f'm --tokenizer tok --prompt "hello" {LATENCY_FAST}')
    assert "did not return token ids" in text


def test_latency_of_a_model_whose_forward_raises_is_one_line_and_restores(shell):
    model = random_model("tiny-llama")
    model.train()

    def boom(module, args, output):
        raise RuntimeError("custom kernel failed")

    handle = model.model.norm.register_forward_hook(boom)
    shell.user_ns["bad"] = model
    try:
        text = one_usage_line(shell, "elana_latency", f"bad {LATENCY_FAST}")
    finally:
        handle.remove()
    assert "RuntimeError: custom kernel failed" in text and model.training


# -- 6. %%elana_energy runs its cell as a plain cell does ----------------------------------------------

def test_energy_cell_top_level_await(shell):
    cell = "import asyncio\nawait asyncio.sleep(0)\nawaited = 7\nawaited * 6"
    assert shell.run_cell_magic("elana_energy", "-q", cell) == 42
    assert shell.user_ns["awaited"] == 7


def test_energy_cell_syntax_error_shows_like_a_plain_cell(shell):
    with capture_output() as plain:
        shell.run_cell("x = (\n")
    with capture_output() as ours:
        result = shell.run_cell("%%elana_energy -q\nx = (\n")
    def shown(text: str) -> list[str]:  # the error display, without our one UsageError line
        return [line for line in text.splitlines() if line.strip() and not line.startswith("UsageError")]

    assert "SyntaxError" in ours.stdout and "elana_magic" not in ours.stdout + ours.stderr
    assert len(shown(ours.stdout)) == len(shown(plain.stdout)), (ours.stdout, plain.stdout)
    assert isinstance(result.error_in_exec, UsageError)


# -- 7. Ctrl-C just after the profiler stopped ---------------------------------------------------------

def test_ctrl_c_while_reading_the_trace_keeps_it_and_says_where(shell, tmp_path, monkeypatch):
    from elana_magic.profile import capture

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(capture, "analyze_trace", interrupted)
    text = one_usage_line(shell, "elana_profile", f"m {PROFILE_FAST} --out t")
    [path] = traces_in(tmp_path / "t")
    assert f"kept at {path!r}" in text
    with open(path) as f:
        json.load(f)


def test_ctrl_c_while_writing_the_trace_leaves_nothing(shell, tmp_path, monkeypatch):
    from elana_magic.profile import capture

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(capture, "_retitle", interrupted)
    before = temp_leftovers()
    assert "no trace written" in one_usage_line(shell, "elana_profile", f"m {PROFILE_FAST} --out t")
    assert traces_in(tmp_path) == [] and temp_leftovers() == before


# -- 8. no custom code, no prompt, unless --trust-remote-code ------------------------------------------

@pytest.fixture
def custom_code_folder(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "custom_code_ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "elana-custom-test", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                                                        "AutoModelForCausalLM": "modeling_custom.CustomModel"}}))
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    (folder / "configuration_custom.py").write_text(code)
    (folder / "modeling_custom.py").write_text(code)
    return folder, marker


def test_custom_code_is_refused_without_trust_remote_code(shell, custom_code_folder, monkeypatch):
    folder, marker = custom_code_folder

    def no_prompt(*args):
        raise AssertionError("something asked on standard input")

    monkeypatch.setattr("builtins.input", no_prompt)
    for magic, line in (("elana_size", f'"{folder}"'), ("elana_latency", f'"{folder}" {LATENCY_FAST}'),
                        ("elana_profile", f'"{folder}" {PROFILE_FAST}')):
        assert "--trust-remote-code" in one_usage_line(shell, magic, line)
    assert not marker.exists()
    done = run_command(str(folder), "--size", cwd=folder.parent)
    assert done.returncode == 2 and "--trust-remote-code" in done.stderr
    assert len(error_lines(done.stderr)) == 1
    assert not marker.exists()
    assert "--trust-remote-code" in run_command("--help").stdout


# -- 9. the smaller ones --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "tiny"
    random_model("tiny-llama").save_pretrained(folder)
    return folder


def test_quiet_silences_the_loading_weights_bar(shell, saved_tiny):
    with capture_output() as cap:
        shell.run_line_magic("elana_latency", f'"{saved_tiny}" {LATENCY_FAST}')
        shell.run_line_magic("elana_profile", f'"{saved_tiny}" {PROFILE_FAST} --out t')
    assert "Loading weights" not in cap.stderr + cap.stdout
    assert "%|" not in cap.stderr + cap.stdout and "it/s]" not in cap.stderr  # no progress bar of any kind


def test_failed_tokenizer_load_gives_the_reason(shell, tmp_path):
    text = one_usage_line(shell, "elana_latency", f'm --tokenizer "{tmp_path / "nope"}" --prompt "hi" {LATENCY_FAST}')
    assert text.startswith("could not load a tokenizer from ")
    assert text.rstrip().split(": ", 1)[1].count(":") >= 1  # class *and* message


@pytest.mark.parametrize("magic, options", [("elana_size", "--seq-len 16 -q"), ("elana_latency", LATENCY_FAST),
                                            ("elana_profile", PROFILE_FAST + " --out t")])
def test_every_model_magic_accepts_a_quoted_preset_and_folder(shell, saved_tiny, magic, options):
    for spec in ('"random:tiny-llama"', f'"{saved_tiny}"', f"'{saved_tiny}'"):
        shell.run_line_magic(magic, f"{spec} {options}")


def test_size_of_a_list_expression_says_it_is_not_a_model(shell):
    text = one_usage_line(shell, "elana_size", "[1, 2, 3]")
    assert "is a list, not a torch.nn.Module" in text


# -- 10. a report says when a figure rests on fewer runs than asked, or is noisy ------------------------

def test_fewer_runs_than_asked_is_said_plainly(tiny_llama):
    from elana_magic.latency import measure_latency

    rep = measure_latency(tiny_llama, phases=["ttlt"], prompt_len=4, gen_len=3, warmup=0, repeats=5,
                          min_time=0, energy=False, progress=False, max_time=0.0)
    assert rep.data["ttlt_ms"]["n"] < 5
    assert any("TTLT rests on 1 of the 5 runs asked" in n for n in rep.data["notes"]), rep.data["notes"]
    assert "rests on 1 of the 5 runs asked" in rep.to_text()


def test_noisy_figures_are_flagged_with_what_to_do():
    from elana_magic.latency.measure import reliability_notes

    skewed = {"ttlt_ms": {"median": 1310.0, "p99": 12400.0, "ci95_low": 1200.0, "ci95_high": 1400.0}}
    wide = {"tpot_ms": {"median": 10.0, "p99": 12.0, "ci95_low": 9.5, "ci95_high": 10.6}}
    tight = {"ttft_ms": {"median": 10.0, "p99": 10.5, "ci95_low": 9.9, "ci95_high": 10.1}}
    [note] = reliability_notes(skewed, {"ttlt": 10}, 5, {})
    assert "TTLT is noisy" in note and "9.5x the median" in note and "--repeats" in note
    [note] = reliability_notes(wide, {"tpot": 10}, 5, {})
    assert "TPOT is noisy" in note and "95% CI" in note and "11% of the median" in note
    assert reliability_notes(tight, {"ttft": 10}, 5, {}) == []


# -- found by the argument fuzz suite (tests/fuzz) ------------------------------------------------------

def test_energy_statement_that_is_not_python_is_one_line(shell):
    """`--label x = 1`: the label takes `x`, and `= 1` is not a statement."""
    text = one_usage_line(shell, "elana_energy", "--min-time 0.001 --label x = 1")
    assert "is not valid Python" in text


@pytest.mark.parametrize("cell", ["", "   ", "\n\n"])
def test_energy_blank_cell_is_one_line(shell, cell):
    assert "empty" in one_usage_line(shell, "elana_energy", "--min-time 0.001", cell)  # IPython says it for ""


@pytest.mark.parametrize("magic, line, cell", [("elana_profile", 'm --label "abc', None),
                                               ("elana_profile", "--out 'x", "y = 1"),
                                               ("elana_energy", '--label "abc', "y = 1"),
                                               ("elana_size", "m --cache-dtype 'fp8", None)])
def test_an_unbalanced_quote_is_one_line(shell, magic, line, cell):
    assert "No closing quotation" in one_usage_line(shell, magic, line, cell)


# -- issue 22: the rest of the new user's list -----------------------------------------------------------

BOTH_QUOTES = [r'''"it's \"x\""''', r"""'it'\''s "x"'"""]  # as a shell takes them: it's "x"


@pytest.mark.parametrize("label", BOTH_QUOTES)
def test_a_label_with_both_quote_characters_is_read_as_a_shell_reads_it(shell, label):
    rep = shell.run_line_magic("elana_latency", f"m --label {label} {LATENCY_FAST} -o")
    assert rep.label == """it's "x\""""
    rep = shell.run_cell_magic("elana_energy", f"--label {label} --min-time 0.001 -q -o", "y = 1")
    assert rep.label == """it's "x\""""
    assert shell.user_ns["y"] == 1
    shell.user_ns["ys"] = []
    rep = shell.run_line_magic("elana_energy", f"--label {label} --min-time 0.001 -q -o ys.append(2)")
    assert rep.label == """it's "x\"""" and shell.user_ns["ys"][:1] == [2]


def test_a_batch_too_big_for_the_cpus_memory_is_refused_before_allocating(shell, monkeypatch):
    """The cache and activation estimate is checked against the memory available first: one line, nothing run."""
    from elana_magic.size import fit

    monkeypatch.setattr(fit, "system_memory", lambda: {"bytes": 10**6, "where": "a test budget"})
    calls = []
    monkeypatch.setattr(shell.user_ns["m"], "forward", lambda *a, **k: calls.append(1))
    text = one_usage_line(shell, "elana_latency", f"m --batch 64 {LATENCY_FAST.replace('--prompt-len 4', '--prompt-len 512')}")
    assert text.startswith("out of memory on cpu") and "estimated" in text and "1.000 MB available" in text
    assert calls == []
    done = run_command("random:tiny-llama", "--ttft", "--batch_size", "1000000000", "--prompt_len", "8",
                       "--gen_len", "2")
    assert done.returncode == 2 and error_lines(done.stderr)[0].startswith("elana-magic: out of memory on cpu")
    assert "estimated" in done.stderr
