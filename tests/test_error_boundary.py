"""Issue 22: one way in (one model resolver for every magic and the command) and one way out (one error
boundary: a user's error, Ctrl-C or the model's own exception is one UsageError line and the live view is
cleared); measurement reports progress through ``core.progress`` and builds no view.

Magics run through the real IPython shell, the command through a subprocess.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
from IPython.core.error import UsageError

LATENCY_FAST = "--prompt-len 4 --gen-len 3 --warmup 0 --repeats 1 --min-time 0 --no-energy -q"
API_FAST = dict(phases=["ttft"], prompt_len=4, gen_len=2, warmup=1, repeats=2, min_time=0.0, energy=False)


@pytest.fixture
def shell(ip, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ip.user_ns["m"] = tiny_llama
    return ip


def usage_line(shell, magic: str, line: str) -> str:
    with pytest.raises((UsageError, KeyboardInterrupt)) as info:
        shell.run_line_magic(magic, line)
    assert info.type is UsageError, f"{info.type.__name__} reached the user: {info.value}"
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


class RecordingView:
    """What a magic's live view answers (the progress calls and its lifetime), recorded."""

    def __init__(self):
        self.calls: list[str] = []
        self.cleared = False

    def phase(self, name, power=None):
        self.calls.append(name)
        return self

    def update(self, n=1):
        pass

    def close(self):
        pass

    def stop(self):
        pass

    def clear(self, text=""):
        self.cleared = True

    def close_widgets(self):
        pass


# -- one way out -----------------------------------------------------------------------------------------

def test_a_paired_model_that_raises_mid_run_is_one_line_and_clears_the_live_view(shell, tiny_llama, monkeypatch):
    bad = copy.deepcopy(tiny_llama)

    def broken(module, args):
        raise RuntimeError("the edited layer is broken\nsecond line")

    bad.register_forward_pre_hook(broken)
    shell.user_ns["bad"] = bad
    view = RecordingView()
    monkeypatch.setattr("elana_magic.magics.latency._live_view", lambda title, quiet: view)
    text = usage_line(shell, "elana_latency", f"m bad --rounds 2 {LATENCY_FAST}")
    assert text == ("a model failed during the measurement (RuntimeError: the edited layer is broken); nothing was "
                    "kept, the models are as they were")
    assert view.cleared and view.calls  # the view got the phases, then was emptied


def test_an_energy_statement_that_raises_is_one_line_with_no_report(shell, no_nvml):
    text = usage_line(shell, "elana_energy", "--min-time 0.01 1/0")
    assert text == "the statement raised ZeroDivisionError: division by zero; no energy report"


def test_ctrl_c_in_an_energy_statement_is_one_line(shell, no_nvml):
    text = usage_line(shell, "elana_energy", "--min-time 0.01 raise KeyboardInterrupt")
    assert text == "interrupted: the energy window was closed, no report"


def test_a_size_that_fails_is_one_line(shell, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no such attribute")

    monkeypatch.setattr("elana_magic.size.measure_size", broken)
    assert usage_line(shell, "elana_size", "m --seq-len 8") == ("the model failed while it was sized (RuntimeError: "
                                                              "no such attribute); nothing was kept")


def test_a_compare_that_fails_is_one_line(shell, tiny_llama, monkeypatch):
    from elana_magic.size import measure_size

    shell.user_ns["a"] = measure_size(tiny_llama, seq_len=8, label="a")
    shell.user_ns["b"] = measure_size(tiny_llama, seq_len=8, label="b")

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'get'")

    monkeypatch.setattr("elana_magic.core.compare.compare", broken)
    text = usage_line(shell, "elana_compare", "a b")
    assert text == "could not compare these reports (AttributeError: 'NoneType' object has no attribute 'get')"


# -- one way in ------------------------------------------------------------------------------------------

HUB_ID = "no-such-org/no-such-model"
OFFLINE = "'no-such-org/no-such-model' is no folder, and as a hub id it is not in the local cache and the Hub is offline"


def test_a_hub_id_is_resolved_alike_by_the_magics_and_the_command(shell, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for magic, options in (("elana_latency", LATENCY_FAST), ("elana_profile", "--phase ttft -q"),
                           ("elana_size", "--seq-len 8")):
        assert usage_line(shell, magic, f'"{HUB_ID}" {options}').startswith(OFFLINE), magic
    for phase in ("--ttft", "--size"):
        done = subprocess.run([sys.executable, "-m", "elana_magic", HUB_ID, phase], capture_output=True, text=True,
                              cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=240)
        lines = [x for x in done.stderr.strip().splitlines() if not x.startswith("note: ")]
        assert done.returncode == 2 and lines == [lines[0]] and lines[0].startswith(f"elana-magic: {OFFLINE}"), \
            done.stderr


def test_the_magics_do_not_download_and_say_so(shell, monkeypatch):
    from elana_magic import loading

    monkeypatch.setattr(loading, "hub_offline", lambda: False)
    monkeypatch.setattr(loading, "reachable", lambda url, timeout=3.0: True)
    text = usage_line(shell, "elana_latency", f'"{HUB_ID}" {LATENCY_FAST}')
    assert "not in the local cache and the magics don't download (the command elana-magic does)" in text


def test_a_path_that_is_no_folder_is_one_line_everywhere(shell, tmp_path):
    missing = tmp_path / "missing" / "model"
    for magic in ("elana_latency", "elana_size"):
        assert usage_line(shell, magic, f'"{missing}" --seq-len 8' if magic == "elana_size" else
                          f'"{missing}" {LATENCY_FAST}').startswith(f"no folder '{missing}'")


# -- progress: a protocol, no view built by measurement code ---------------------------------------------

def test_progress_true_in_a_notebook_builds_no_view(tiny_llama, monkeypatch):
    from elana_magic.core import display, live
    from elana_magic.latency import measure_latency

    monkeypatch.setattr(display, "in_widget_frontend", lambda: True)
    monkeypatch.setattr("elana_magic.latency.measure.in_widget_frontend", lambda: True, raising=False)
    started = []
    monkeypatch.setattr(live.LiveView, "start", lambda self: started.append(self) or self)
    measure_latency(tiny_llama, progress=True, **API_FAST)
    assert started == []


def test_progress_true_in_a_terminal_is_one_bar_per_phase(tiny_llama, monkeypatch):
    from elana_magic.latency import measure_latency

    bars = []
    monkeypatch.setattr("elana_magic.core.progress.terminal_bar", lambda desc, unit, total=None: bars.append(desc))
    measure_latency(tiny_llama, progress=True, **API_FAST)
    assert bars == ["elana TTFT warm-up", "elana TTFT"]


def test_any_progress_object_gets_the_phases(tiny_llama):
    from elana_magic.core.progress import Progress
    from elana_magic.latency import measure_latency

    view = RecordingView()
    assert isinstance(view, Progress)
    measure_latency(tiny_llama, progress=view, **API_FAST)
    assert view.calls == ["TTFT warm-up", "TTFT"]
