"""The one option spec: the command and every magic expose the options it declares, with the API's defaults."""

from __future__ import annotations

import argparse
import inspect
import pathlib

import pytest

from elana_magic import cli
from elana_magic.core import defaults
from elana_magic.core.options import (COMMAND, MAGICS, OPTIONS, README_BEGIN, README_END, OptionError,
                                      command_reference, cpu_sized)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _magic_parsers() -> dict[str, argparse.ArgumentParser]:
    from elana_magic.magics import magic_classes

    parsers = {}
    for cls in magic_classes():
        for names in cls.magics.values():
            for name, method in names.items():
                parsers[name] = getattr(cls, method).parser
    return parsers


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _action_of(parser: argparse.ArgumentParser, option) -> argparse.Action:
    """The parser's action for a spec option (a positional by its dest, a flag by our first spelling)."""
    for action in _actions(parser):
        if option.positional and not action.option_strings and action.dest == option.dest:
            return action
        if not option.positional and option.flag in action.option_strings:
            return action
    raise AssertionError(f"{option.key} not in {parser.prog}")


def _shape(action: argparse.Action) -> tuple:
    type_name = getattr(action.type, "__name__", None)
    return (type(action).__name__, action.dest, action.nargs, action.const, action.choices, action.metavar, type_name)


def test_every_magic_declares_its_options_in_the_spec_only():
    parsers = _magic_parsers()
    assert set(parsers) == set(MAGICS)
    for name, uses in MAGICS.items():
        declared = [(tuple(o.flags) or (o.dest,)) for o in uses.options()]
        present = [tuple(a.option_strings) or (a.dest,) for a in _actions(parsers[name])]
        assert present == declared, name


def test_command_declares_its_options_in_the_spec_only():
    parser = cli.build_parser()
    declared = [tuple(o.flags + o.elana) or (o.dest,) for o in COMMAND.options()]
    present = [tuple(a.option_strings) or (a.dest,) for a in _actions(parser)]
    assert present == declared


# %elana_history and %elana_compare work on reports, not models: the command has no counterpart
MEASURING = sorted(set(MAGICS) - {"elana_history", "elana_compare"})


@pytest.mark.parametrize("magic", MEASURING)
def test_command_and_magic_expose_the_same_shared_options(magic):
    """Same flags (ours; the command adds ELANA's), type, nargs, choices, help and default."""
    magic_parser, command = _magic_parsers()[magic], cli.build_parser()
    shared = [k for k in MAGICS[magic].keys if k in COMMAND.keys]
    assert shared, magic
    for key in shared:
        option = OPTIONS[key]
        ours, theirs = _action_of(magic_parser, option), _action_of(command, option)
        assert _shape(ours) == _shape(theirs), key
        if not option.positional:
            assert ours.option_strings == list(option.flags)
            assert theirs.option_strings == list(option.flags + option.elana)
        assert theirs.help.startswith(ours.help), key
        unset = {key in MAGICS[magic].unset, key in COMMAND.unset}
        if unset == {False}:
            assert ours.default == theirs.default, key
        else:  # filled in by its caller; the help still states the API's default
            assert None in (ours.default, theirs.default), key


def test_the_command_and_magics_take_the_same_values():
    """A value one accepts the other accepts; a value one refuses the other refuses with the same line."""
    magic_parser, command = _magic_parsers()["elana_latency"], cli.build_parser()
    for flag, good, bad in (("--prompt-len", "7", "abc"), ("--min-time", "0.5", "nan"),
                            ("--peak-bw", "3.35TB/s", "1e400"), ("--repeats", "3", "0")):
        dest = _action_of(command, next(o for o in OPTIONS.values() if o.flag == flag)).dest
        assert getattr(magic_parser.parse_args(["m", flag, good]), dest) == \
            getattr(command.parse_args([flag, good]), dest)
        with pytest.raises(OptionError) as a:
            magic_parser.parse_args(["m", flag, bad])
        with pytest.raises(OptionError) as b:
            command.parse_args([flag, bad])
        assert str(a.value) == str(b.value)


def test_defaults_are_the_plain_apis():
    from elana_magic.energy import measure_energy
    from elana_magic.latency import LatencySettings
    from elana_magic.profile import profile_phase
    from elana_magic.size import measure_size

    def api(func, name):
        return inspect.signature(func).parameters[name].default

    for key, func, name in (("batch", LatencySettings, "batch"), ("prompt-len", LatencySettings, "prompt_len"),
                            ("gen-len", LatencySettings, "gen_len"), ("warmup", LatencySettings, "warmup"),
                            ("repeats", LatencySettings, "repeats"), ("min-time", LatencySettings, "min_time"),
                            ("prefill", LatencySettings, "prefill"), ("ngpus", LatencySettings, "ngpus"),
                            ("rounds", LatencySettings, "rounds"),
                            ("prompt-len", profile_phase, "prompt_len"), ("gen-len", profile_phase, "gen_len"),
                            ("batch", profile_phase, "batch"), ("phase", profile_phase, "phase"),
                            ("top", profile_phase, "top"), ("energy-min-time", measure_energy, "min_time")):
        assert OPTIONS[key].default == api(func, name), key
    for key, name in (("grid-batch", "batch"), ("grid-prompt-len", "prompt_len"), ("grid-gen-len", "gen_len")):
        assert OPTIONS[key].default == [api(LatencySettings, name)], key
    assert OPTIONS["size-batch"].default == list(api(measure_size, "batch"))
    assert OPTIONS["seq-len"].default == list(api(measure_size, "seq_len"))
    for key in ("energy", "cuda-graph", "no-compile"):  # None: the API decides (sensor present, CUDA)
        assert OPTIONS[key].default is None
    assert api(LatencySettings, "compile") is None and api(LatencySettings, "cuda_graph") is None


@pytest.mark.parametrize("argv, message", [
    (["--min-time", "nan"], "--min-time takes a number of seconds >= 0, e.g. --min-time 1; got 'nan'"),
    (["--min-time", "1e400"], "--min-time takes a number of seconds >= 0, e.g. --min-time 1; got '1e400'"),
    (["--prompt_len", "abc"], "--prompt-len takes whole numbers >= 1, e.g. --prompt-len 128 512; got 'abc'"),
    (["--seq-len", "128", "x"], "--seq-len takes whole numbers >= 1, e.g. --seq-len 1024 8192; got 'x'"),
    (["--peak-flops", "1e400"], "--peak-flops takes a rate > 0 such as 989e12 or 989T; got '1e400'"),
    (["--peak-bw", "inf"], "--peak-bw takes a rate > 0 such as 3.35e12 or 3.35TB/s; got 'inf'"),
    (["--warmup", "-1"], "--warmup takes a whole number >= 0, e.g. --warmup 2; got '-1'"),
    (["--ngpus", "0"], "--ngpus takes a whole number >= 1, e.g. --ngpus 2; got '0'"),
    (["--log_level", "LOUD"], "--log-level takes one of DEBUG, INFO, WARNING, ERROR; got 'LOUD'"),
])
def test_command_refuses_bad_values_in_one_line_before_any_work(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(cli, "ModelTarget", None)  # nothing may be loaded
    with pytest.raises(SystemExit) as exc:
        cli.main(["random:tiny-llama", *argv])
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"elana-magic: {message}\n"


def test_elana_spellings_mean_ours():
    parser = cli.build_parser()
    ours = parser.parse_args(["m", "--batch", "2", "--prompt-len", "7", "--gen-len", "3", "--cuda-graph",
                              "--torch-profile", "--label", "x", "--device-map", "auto", "--log-level", "info",
                              "--phase", "ttlt"])
    elana = parser.parse_args(["m", "--batch_size", "2", "--prompt_len", "7", "--gen_len", "3", "--cache_graph",
                               "--torch_profile", "--model_name", "x", "--device_map", "auto", "--log_level", "INFO",
                               "--profile-phase", "ttlt"])
    assert vars(ours) == vars(elana)


def test_cpu_sized_defaults_only_without_a_gpu():
    parser = cli.build_parser()
    on_gpu = parser.parse_args([])
    assert cpu_sized(on_gpu, gpu=True) == []
    # the command's request lengths are lists (several values: a grid)
    assert (on_gpu.prompt_len, on_gpu.gen_len, on_gpu.repeats) == ([defaults.PROMPT_LEN], [defaults.GEN_LEN],
                                                                   defaults.REPEATS)
    on_cpu = parser.parse_args(["--gen_len", "64"])
    changed = {o.key for o in cpu_sized(on_cpu, gpu=False)}
    assert "grid-prompt-len" in changed and "grid-gen-len" not in changed  # what the user gave stays
    assert on_cpu.prompt_len == OPTIONS["grid-prompt-len"].cpu_default and on_cpu.prompt_len[0] < defaults.PROMPT_LEN
    assert on_cpu.gen_len == [64]


def test_readme_lists_the_commands_flags_as_the_spec_declares_them():
    readme = (ROOT / "README.md").read_text()
    assert README_BEGIN in readme and README_END in readme
    block = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert block == command_reference(), "run `python -m elana_magic.core.options` and paste its output in README.md"
    for option in COMMAND.options():
        for flag in option.flags + option.elana:
            assert f"`{flag}" in block


def test_every_cpu_sized_option_names_the_phases_it_changes():
    """The command's CPU note lists only options the chosen phases use: each CPU-sized option says which."""
    assert set(COMMAND.unset) == set(cli._USED_BY)
    assert all(set(phases) <= {p.name for p in cli.PHASES} for phases in cli._USED_BY.values())


def test_rounds_has_an_upper_bound_in_the_one_spec(ip, tiny_llama):
    """Issue 22: --rounds 10**9 would run for ever; the spec bounds it (one line), and so does the API."""
    from IPython.core.error import UsageError

    from elana_magic.core import defaults
    from elana_magic.latency import GenerationInputError, LatencySettings

    ip.user_ns.update(a=tiny_llama, b=tiny_llama)
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("elana_latency", "a b --rounds 1000000000")
    assert str(err.value) == (f"--rounds takes a whole number from 1 to {defaults.MAX_PAIRED_ROUNDS}, e.g. --rounds 6; "
                              "got '1000000000'")
    with pytest.raises(GenerationInputError, match=f"rounds must be an integer from 1 to {defaults.MAX_PAIRED_ROUNDS}"):
        LatencySettings(rounds=defaults.MAX_PAIRED_ROUNDS + 1)
    assert LatencySettings(rounds=defaults.MAX_PAIRED_ROUNDS).rounds == defaults.MAX_PAIRED_ROUNDS
