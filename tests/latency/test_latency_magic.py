"""%elana_latency through a real IPython shell: options, -o/-v/-q, and every bad input as one line."""

import pytest
from IPython.core.error import UsageError

from elana_magic.latency import LatencyReport

FAST = "--warmup 0 --repeats 2 --min-time 0 --no-energy"


@pytest.fixture
def shell(ip, tiny_llama):
    ip.user_ns["model"] = tiny_llama
    return ip


def test_all_phases_returned_and_stored(shell):
    rep = shell.run_line_magic("elana_latency", f"model --batch 2 --prompt-len 8 --gen-len 4 {FAST} -o -q -v res")
    assert isinstance(rep, LatencyReport) and shell.user_ns["res"] is rep
    assert rep.batch == 2 and rep.prompt_len == 8 and rep.gen_len == 4
    assert rep.ttft_ms["n"] and rep.tpot_ms["n"] and rep.ttlt_ms["n"]
    assert rep.label is None and rep.engine == "eager" and rep.cuda_graph is False


def test_phase_flags_and_label(shell):
    rep = shell.run_line_magic("elana_latency", f"model --ttft --prompt-len 8 --gen-len 2 {FAST} --label mine -o -q")
    assert rep.phases == ["ttft"] and rep.label == "mine"
    assert rep.tpot_ms["n"] == 0 and rep.ttlt_ms["n"] == 0


def test_peak_overrides_give_mbu(shell):
    rep = shell.run_line_magic("elana_latency",
                               f"model --tpot --prompt-len 8 --gen-len 3 {FAST} --peak-bw 1GB/s --peak-flops 1T -o -q")
    assert rep.roofline["peak_bw_bytes_per_s"] == 1e9 and rep.roofline["peak_flops_per_s"] == 1e12
    assert rep.roofline["mbu"] > 0 and rep.roofline["peak_source"] == "override"


def test_displays_text_and_html(shell, capsys):
    result = shell.run_line_magic("elana_latency", f"model --ttlt --prompt-len 8 --gen-len 3 {FAST}")
    assert result is None
    assert "TTLT (request)" in capsys.readouterr().out


def test_cuda_graph_flag_on_cpu_is_a_note(shell):
    rep = shell.run_line_magic("elana_latency", f"model --ttft --prompt-len 8 --gen-len 2 {FAST} --cuda-graph -o -q")
    assert rep.engine == "eager" and any("CUDA graphs need a CUDA device" in n for n in rep.notes)


def test_no_compile_flag_on_cpu(shell):
    rep = shell.run_line_magic("elana_latency", f"model --tpot --prompt-len 8 --gen-len 3 {FAST} --no-compile -o -q")
    assert rep.engine == "eager" and rep.tpot_ms["n"]


def test_real_prompt_with_tokenizer(ip, default_model):
    ip.user_ns["lm"] = default_model.model
    ip.user_ns["tok"] = default_model.tokenizer
    rep = ip.run_line_magic("elana_latency",
                            f'lm --tokenizer tok --prompt "The capital of France is" --ttft --gen-len 2 {FAST} -o -q')
    assert rep.prompt_len == len(default_model.tokenizer("The capital of France is")["input_ids"])


@pytest.mark.parametrize("line, match", [
    ("model --prompt-len 1000 --gen-len 100", r"^prompt length 1000 \+ generated length 100 = 1100 exceeds"),
    ("model --prompt-len 0", r"^--prompt-len takes a whole number >= 1, e.g. --prompt-len 128; got '0'$"),
    ("model --prompt-len abc", r"^--prompt-len takes a whole number >= 1, e.g. --prompt-len 128; got 'abc'$"),
    ("model --gen-len 0", r"^--gen-len takes a whole number >= 1, e.g. --gen-len 32; got '0'$"),
    ("model --batch 0", r"^--batch takes a whole number >= 1, e.g. --batch 8; got '0'$"),
    ("model --repeats 0", r"^--repeats takes a whole number >= 1"),
    ("model --warmup -1", r"^--warmup takes a whole number >= 0"),
    ("model --tpot --gen-len 1", r"^TPOT needs at least 2 generated tokens"),
    ("model.model", r"^LlamaModel has no LM head and cannot generate"),
    ('model --prompt "hello there"', r"^--prompt needs a tokenizer"),
    ("nothing_here", r"name 'nothing_here' is not defined"),
    ("len", r"is a builtin_function_or_method, not a torch.nn.Module"),
    ("42", r"^'42' is an int, not a torch.nn.Module"),
    ("model --peak-bw fast", r"^--peak-bw takes a rate > 0 such as 3.35e12 or 3.35TB/s; got 'fast'$"),
    ("model --peak-flops 1e400", r"^--peak-flops takes a rate > 0 such as 989e12 or 989T; got '1e400'$"),
    ("model --min-time -1", r"^--min-time takes a number of seconds >= 0, e.g. --min-time 1; got '-1'$"),
    ("model --min-time nan", r"^--min-time takes a number of seconds >= 0, e.g. --min-time 1; got 'nan'$"),
    ("model --min-time inf", r"^--min-time takes a number of seconds >= 0"),
    ("model -v 1abc", r"^-v takes a Python variable name, e.g. -v rep; got '1abc' \(not a Python name\)$"),
    ("model -v for", r"^-v takes a Python variable name, e.g. -v rep; got 'for' \(a Python keyword\)$"),
])
def test_bad_input_one_line(shell, line, match):
    model = shell.user_ns["model"]
    model.train()
    try:
        with pytest.raises(UsageError, match=match) as info:
            shell.run_line_magic("elana_latency", line + " -q")
        assert "\n" not in str(info.value)
        assert model.training  # state as before
    finally:
        model.eval()


def test_interrupt_is_one_line_and_restores(shell):
    model = shell.user_ns["model"]

    def interrupt(module, args):
        raise KeyboardInterrupt

    handle = model.register_forward_pre_hook(interrupt)
    try:
        with pytest.raises(UsageError, match="^interrupted: nothing was kept"):
            shell.run_line_magic("elana_latency", f"model --prompt-len 8 --gen-len 3 {FAST} -q")
    finally:
        handle.remove()
    assert not model.training


@pytest.mark.parametrize("line", ["model -v 1abc", "model -v for", "model --min-time nan", "model --peak-flops 1e400"])
def test_options_are_checked_before_any_measurement(shell, monkeypatch, line):
    def measured(*args, **kwargs):
        raise AssertionError("measure_latency ran before the options were checked")

    monkeypatch.setattr("elana_magic.latency.measure_latency", measured)
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("elana_latency", line)
    assert "\n" not in str(info.value)
