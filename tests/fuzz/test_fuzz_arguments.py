"""Property-based: generated argument lines for every magic and the shell command (issue 8).

Options are read from the magics' own parsers (a ``magic_arguments`` function has ``.parser``) and
from the command's ``build_parser()``; each gets valid values (kept tiny so a case runs in well under
a second), invalid ones (zero, negative, huge, non-finite, not a number), quoting of every kind and
unicode; unknown and repeated flags are mixed in. For every case:

* success, or exactly one ``UsageError`` line (the command: exit 0, or exit 2 with one stderr line);
  never a traceback;
* nothing created in the working directory (a fresh temporary one) outside the trace folder, and no
  temporary trace file left behind;
* no ``elana-*`` thread alive;
* the model's state_dict checksum, training flag, ``requires_grad`` flags, ``use_cache`` and
  ``generation_config`` as before.

Fixed seed (``derandomize``), bounded examples, no example database (nothing written to disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from elana_magic import cli
from elana_magic.magics._common import is_quoted, unquote
from elana_magic.magics.compare import CompareMagics
from elana_magic.magics.energy import EnergyMagics
from elana_magic.magics.latency import LatencyMagics
from elana_magic.magics.profile import ProfileMagics
from elana_magic.magics.size import SizeMagics

FUZZ = dict(derandomize=True, database=None, deadline=None, print_blob=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                   HealthCheck.data_too_large, HealthCheck.filter_too_much])

# -- value pools --------------------------------------------------------------------------------------

QUOTED = ['"two words"', "'single'", '"a \'b\' c"', "'a \"b\" c'", '""', "''", '"unbalanced', "'unbalanced",
          "back\\slash", '"ü 名前 🙂"', "\u200b", "--", "-", "a=b", "$HOME", "{1+1}", "%s", "'\\'"]
BAD_INTS = ["0", "-1", "-0", "abc", "1.5", "nan", "inf", "-inf", "1e400", "0x10", "'2'", '"2"', "٣",
            "99999999999999999999999", "-99999999999999999999999"]
BAD_FLOATS = ["-1", "-0.5", "abc", "nan", "inf", "-inf", "1e400", "-1e400", "'0.1'", "1,5"]
# Valid values are tiny (fast); "huge" only where a huge value fails at once (out of memory, too long).
VALID = {
    "batch": ["1", "2", "1000000000000"], "seq_len": ["1", "16", "10000000"],
    "prompt_len": ["1", "4", "100000"], "gen_len": ["2", "3", "100000"], "steps": ["1", "2"],
    "warmup": ["0", "1"], "repeats": ["1", "2"], "min_time": ["0", "0.001"], "top": ["1", "3", "1000"],
    "cache_dtype": ["bfloat16", "fp8", "float16", "int3"], "devices": ["0", "0,1", "a", "-1", "1,,2"],
    "peak_bw": ["3.35TB/s", "1e12", "fast", "0", "1e400"], "peak_flops": ["989T", "1e15", "-5", "0"],
    "tokenizer": ["tok", "nothing_here", '"no_such_tokenizer"', "len"],
    "prompt": ['"hello there"', "hi", "'ünïcode 名前'"],
    "label": ["run-1", "x"], "var": ["rep", "r_2", "1abc", "rëp"],
    "out": ["t", '"my traces"', "'q dir'", '"dir \'q\' \\back"', '""', "ü", "sub/dir", "'unbalanced"],
    "phase": ["ttft", "tpot", "ttlt", "bogus"], "profile_phase": ["ttft", "tpot", "ttlt", "bogus"],
    "ngpus": ["1", "0"],  # not 2: that launches torchrun replicas (tested with the command's own tests)
    "device_map": ["cpu", "cuda:0", "auto"], "json": ["-", "out.json"], "csv": ["out.csv"],
    "log_level": ["INFO", "warning", "ERROR", "LOUD"],  # not DEBUG: it shows tracebacks by design
    "save": ["runs.jsonl", '"my runs.jsonl"', "'unbalanced", "sub/dir/x.jsonl"],
    "load": ["SAVED", "runs.jsonl", "nope.jsonl", "'unbalanced", '""'],
}
VALID["min_time_energy"] = ["0.001", "0.01", "0", "-1", "abc", "nan", "inf", "1e400"]
VALID["var"] += ["for", "m"]  # `m` is put back after each case

UNKNOWN = ["--bogus", "-x", "--batchx", "--", "---", "--batch=2", "--min-time=-1", "-qo", "--ünï"]


def values_for(action, dest: str) -> st.SearchStrategy[str]:
    """Half from the option's own pool (mostly valid), half hostile for its type."""
    hostile = BAD_INTS if action.type is int else BAD_FLOATS if action.type is float else QUOTED
    own = VALID.get(dest)
    return st.one_of(st.sampled_from(own), st.sampled_from(hostile)) if own else st.sampled_from(hostile)


def option_strategy(parser, skip=(), rename=None) -> st.SearchStrategy[list[str]]:
    """One option as tokens: a flag alone, or with one or more values (valid or not), or an unknown flag."""
    rename = rename or {}
    choices = []
    for action in parser._actions:
        if not action.option_strings or action.dest in skip or action.dest == "help":
            continue
        flag = st.sampled_from(action.option_strings)
        if action.nargs == 0:
            choices.append(flag.map(lambda f: [f]))
            continue
        values = values_for(action, rename.get(action.dest, action.dest))
        if action.nargs == "+":
            choices.append(st.tuples(flag, st.lists(values, min_size=1, max_size=3)).map(lambda t: [t[0], *t[1]]))
        else:  # mostly `--flag value`; sometimes the value is missing, or given as `--flag=value`
            choices.append(st.tuples(flag, values, st.integers(0, 6)).map(
                lambda t: [t[0]] if t[2] == 0 else [f"{t[0]}={t[1]}"] if t[2] == 6 else [t[0], t[1]]))
    choices.append(st.sampled_from(UNKNOWN).map(lambda f: [f]))
    return st.one_of(choices)


def options(parser, skip=(), rename=None, max_size=3) -> st.SearchStrategy[list[str]]:
    return st.lists(option_strategy(parser, skip, rename), max_size=max_size).map(lambda xs: [t for x in xs for t in x])


MODELS = st.sampled_from(["m"] * 12 + ['"random:tiny-llama"', "[1, 2, 3]", "m.model", "nothing_here", "len",
                                      '"no_such_dir"', "'random:nope'", '"unbalanced', "m m", "{'a': 1}"])
STATEMENTS = st.sampled_from(["x = 1", "pass", "[i for i in range(3)]", "x = 'a b'", "ü = 1"])
CELLS = st.sampled_from(["y = 1", "y = 1\ny + 1", "import asyncio\nawait asyncio.sleep(0)", "x = (", "", "   "])

LATENCY_FAST = "--prompt-len 4 --gen-len 3 --warmup 0 --repeats 1 --min-time 0 --no-energy"
PROFILE_FAST = "--phase ttft --prompt-len 4 --gen-len 3 --steps 1"
SIZE_FAST = "--seq-len 16 --no-check"
ENERGY_FAST = "--min-time 0.001 --no-plot"


# -- what must hold after every case ------------------------------------------------------------------

def model_state(model: torch.nn.Module) -> tuple:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return (digest.hexdigest(), model.training, tuple(p.requires_grad for p in model.parameters()),
            model.config.use_cache, model.generation_config.to_json_string())


def temp_traces() -> set[str]:
    return {f for f in os.listdir(tempfile.gettempdir()) if f.startswith(".elana-trace-")}


def elana_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("elana")]


def allowed_entries(tokens: list[str], quoted: bool, flags=("--out",)) -> set[str]:
    """What a case may create: elana_traces/ and the first component of each value of ``flags``
    (the trace folder; for the command also the --json / --csv files asked for)."""
    allowed = {"elana_traces"}
    for i, tok in enumerate(tokens):
        name = tok.split("=", 1)[0]
        value = tok.split("=", 1)[1] if "=" in tok and name in flags else (
            tokens[i + 1] if tok in flags and i + 1 < len(tokens) else None)
        if value is not None:
            value = unquote(value) if quoted and is_quoted(value) else value
            allowed.add(value.strip().split("/")[0] if quoted else value.split("/")[0])
    return allowed


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def fuzz_shell(ip, tiny_llama, workdir):
    ip.user_ns["m"] = tiny_llama
    return ip


def check_magic(shell, model, workdir, magic: str, line: str, cell: str | None = None,
                flags: tuple[str, ...] = ("--out",)) -> str:
    """Run one generated case and assert the issue's invariants; 'ran' or 'one-line errors'."""
    before, traces = model_state(model), temp_traces()
    names = set(shell.user_ns)
    failure, outcome = None, "ran"
    with capture_output() as cap:
        try:
            if cell is None:
                shell.run_line_magic(magic, line)
            else:
                shell.run_cell_magic(magic, line, cell)
        except UsageError as exc:
            outcome = "one-line errors"
            assert "\n" not in str(exc).strip(), f"{magic} {line!r}: a UsageError of several lines: {exc}"
        except BaseException as exc:  # noqa: BLE001 - anything else is the bug we look for
            failure = exc
    try:
        assert failure is None, f"%{magic} {line!r} (cell {cell!r}) raised {type(failure).__name__}: {failure}"
        assert "Traceback" not in cap.stdout + cap.stderr, f"%{magic} {line!r}: traceback shown\n{cap.stdout}"
        tokens = line.split()
        created = set(os.listdir(workdir)) - allowed_entries(tokens, quoted=True, flags=flags)
        assert not created, f"%{magic} {line!r} created {created} outside the trace folder"
        assert temp_traces() <= traces, f"%{magic} {line!r} left a temporary trace behind"
        assert not elana_threads(), f"%{magic} {line!r} left threads {elana_threads()}"
        assert model_state(model) == before, f"%{magic} {line!r} changed the model's state"
    finally:
        for entry in os.listdir(workdir):
            shutil.rmtree(workdir / entry) if (workdir / entry).is_dir() else os.remove(workdir / entry)
        for name in set(shell.user_ns) - names:
            shell.user_ns.pop(name, None)
        shell.user_ns["m"] = model
    return outcome


# -- the magics ---------------------------------------------------------------------------------------

@settings(max_examples=60, **FUZZ)
@given(model=MODELS, opts=options(SizeMagics.elana_size.parser))
def test_fuzz_elana_size(fuzz_shell, tiny_llama, workdir, fuzz_cases, model, opts):
    outcome = check_magic(fuzz_shell, tiny_llama, workdir,
                          "elana_size", " ".join([model, SIZE_FAST, *opts]))
    fuzz_cases["%elana_size", outcome] += 1


@settings(max_examples=50, **FUZZ)
@given(model=MODELS, opts=options(LatencyMagics.elana_latency.parser))
def test_fuzz_elana_latency(fuzz_shell, tiny_llama, workdir, fuzz_cases, model, opts):
    fuzz_shell.user_ns["tok"] = None
    outcome = check_magic(fuzz_shell, tiny_llama, workdir,
                          "elana_latency", " ".join([model, LATENCY_FAST, *opts]))
    fuzz_cases["%elana_latency", outcome] += 1


@settings(max_examples=30, **FUZZ)
@given(model=MODELS, opts=options(ProfileMagics.elana_profile.parser))
def test_fuzz_elana_profile_line(fuzz_shell, tiny_llama, workdir, fuzz_cases, model, opts):
    outcome = check_magic(fuzz_shell, tiny_llama, workdir,
                          "elana_profile", " ".join([model, PROFILE_FAST, *opts]))
    fuzz_cases["%elana_profile", outcome] += 1


@settings(max_examples=20, **FUZZ)
@given(cell=CELLS, opts=options(ProfileMagics.elana_profile.parser, max_size=3,
                                skip=("phase", "batch", "prompt_len", "gen_len", "steps", "cuda_graph")))
def test_fuzz_elana_profile_cell(fuzz_shell, tiny_llama, workdir, fuzz_cases, cell, opts):
    outcome = check_magic(fuzz_shell, tiny_llama, workdir,
                          "elana_profile", " ".join(opts), cell=cell)
    fuzz_cases["%%elana_profile", outcome] += 1


ENERGY_RENAME = {"min_time": "min_time_energy"}


@settings(max_examples=30, **FUZZ)
@given(statement=STATEMENTS, opts=options(EnergyMagics.elana_energy.parser, rename=ENERGY_RENAME))
def test_fuzz_elana_energy_line(fuzz_shell, tiny_llama, workdir, fuzz_cases, statement, opts):
    outcome = check_magic(fuzz_shell, tiny_llama, workdir,
                          "elana_energy", " ".join([ENERGY_FAST, *opts, statement]))
    fuzz_cases["%elana_energy", outcome] += 1


@settings(max_examples=30, **FUZZ)
@given(cell=CELLS, opts=options(EnergyMagics.elana_energy.parser, rename=ENERGY_RENAME))
def test_fuzz_elana_energy_cell(fuzz_shell, tiny_llama, workdir, fuzz_cases, cell, opts):
    outcome = check_magic(fuzz_shell, tiny_llama, workdir,
                          "elana_energy", " ".join([ENERGY_FAST, *opts]), cell=cell)
    fuzz_cases["%%elana_energy", outcome] += 1


# Reports to compare: history indices and labels (two size reports, "s" and "t", are in the history), a
# variable (rep: "s"), a saved file (SAVED: "t"), and what is none of these.
ITEMS = st.sampled_from(["0", "-1", "#0", "s", "t", "rep", "SAVED", "nope", "7", "-9", "m", "len", "'x", '"x',
                         '"two words"', "''", "ü", "#", "--", "1.5", "SAVED'"])
GOOD_ITEMS = st.sampled_from(["0", "1", "-1", "s", "t", "rep", "SAVED"])


@pytest.fixture
def saved_report(fuzz_shell, tiny_llama, tmp_path):
    """Two size reports (labels "s" and "t"); "s" is also a variable (``rep``), "t" a file (its path)."""
    from elana_magic.size import measure_size

    s, t = (measure_size(tiny_llama, seq_len=[n], cross_check=False, label=lab) for n, lab in ((16, "s"), (32, "t")))
    path = str(tmp_path / "saved.json")
    t.save(path)
    return (s, t), path


def _with_report(shell, saved_report) -> None:
    from elana_magic.core.history import HISTORY

    if not HISTORY.entries:
        for report in saved_report[0]:
            HISTORY.add(report)
    shell.user_ns["rep"] = saved_report[0][0]


@settings(max_examples=40, **FUZZ)
@given(items=st.tuples(st.lists(GOOD_ITEMS, min_size=1, max_size=2, unique=True),
                       st.lists(ITEMS, max_size=2)).map(lambda t: t[0] + t[1]),
       opts=options(CompareMagics.elana_compare.parser, skip=("items",)))
def test_fuzz_elana_compare(fuzz_shell, tiny_llama, workdir, fuzz_cases, saved_report, items, opts):
    _with_report(fuzz_shell, saved_report)
    line = " ".join([*items, *opts]).replace("SAVED", saved_report[1])
    outcome = check_magic(fuzz_shell, tiny_llama, workdir, "elana_compare", line)
    fuzz_cases["%elana_compare", outcome] += 1


@settings(max_examples=40, **FUZZ)
@given(opts=options(CompareMagics.elana_history.parser, max_size=4))
def test_fuzz_elana_history(fuzz_shell, tiny_llama, workdir, fuzz_cases, saved_report, opts):
    _with_report(fuzz_shell, saved_report)
    line = " ".join(opts).replace("SAVED", saved_report[1])
    outcome = check_magic(fuzz_shell, tiny_llama, workdir, "elana_history", line, flags=("--save",))
    fuzz_cases["%elana_history", outcome] += 1


# -- the command --------------------------------------------------------------------------------------

COMMAND_FAST = ["--prompt-len", "4", "--gen-len", "3", "--warmup", "0", "--repeats", "1", "--min-time", "0",
                "--seq-len", "16", "--no-energy", "--no-check"]
COMMAND_MODELS = st.sampled_from(["random:tiny-llama"] * 5 + ["random:nope", "no_such_dir", "", "ü", "./x y",
                                                               "random:", "-"])
PHASE_FLAGS = st.lists(st.sampled_from(["--size", "--ttft", "--tpot", "--ttlt", "--torch-profile", "--json"]),
                       min_size=1, max_size=3)
# argv tokens reach the command already split by the shell: quotes in them are literal characters.
COMMAND_OPTIONS = options(cli.build_parser(), skip=("model",))


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, out.getvalue(), err.getvalue()


def check_command(argv: list[str], code: int, stderr: str, workdir, traces: set[str]) -> None:
    try:
        assert "Traceback" not in stderr, f"{argv}: traceback\n{stderr}"
        assert code in (0, 2), f"{argv}: exit {code}: {stderr}"
        if code == 2:  # advisory notes (a busy machine, CPU-sized defaults) may come before the error
            errors = [line for line in stderr.strip().splitlines() if not line.startswith("note: ")]
            assert len(errors) == 1, f"{argv}: exit 2 with several lines:\n{stderr}"
        created = set(os.listdir(workdir)) - allowed_entries(argv, quoted=False, flags=("--out", "--json", "--csv"))
        assert not created, f"{argv} created {created} outside the trace folder"
        assert temp_traces() <= traces, f"{argv} left a temporary trace behind"
        assert not elana_threads(), f"{argv} left threads {elana_threads()}"
    finally:
        for entry in os.listdir(workdir):
            shutil.rmtree(workdir / entry) if (workdir / entry).is_dir() else os.remove(workdir / entry)


@settings(max_examples=50, **FUZZ)
@given(model=COMMAND_MODELS, phases=PHASE_FLAGS, opts=COMMAND_OPTIONS)
def test_fuzz_command_in_process(workdir, fuzz_cases, model, phases, opts):
    argv = [model, *phases, *COMMAND_FAST, *opts]
    traces = temp_traces()
    code, _, stderr = run_main(argv)
    check_command(argv, code, stderr, workdir, traces)
    fuzz_cases["elana-magic", f"exit {code}"] += 1


@pytest.mark.parametrize("argv", [  # a real process: the entry point, stdin closed, exit status
    ["random:tiny-llama", "--torch-profile", "--out", 'my "quoted" \\ traces', *COMMAND_FAST],
    ["random:tiny-llama", "--size", "--batch", "nan"],
    ["random:tiny-llama", "--ttft", "--bogus", "'quoted'"],
])
def test_command_subprocess(workdir, fuzz_cases, argv):
    traces = temp_traces()
    done = subprocess.run([sys.executable, "-m", "elana_magic", *argv], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=240)
    check_command(argv, done.returncode, done.stderr, workdir, traces)
    fuzz_cases["elana-magic subprocess", f"exit {done.returncode}"] += 1
