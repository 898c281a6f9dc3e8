"""The prefill engine, on a CPU with doubles for the CUDA parts: which engine is chosen, the check against an
eager prefill, the fallback note, the per-phase engine label, and ``prefill="eager"`` as plain transformers."""

from __future__ import annotations

import pytest
import torch

from elana_magic.core.compare import compare
from elana_magic.latency import measure_latency
from elana_magic.latency import session as S

FAST = dict(prompt_len=8, gen_len=3, warmup=0, repeats=2, min_time=0.0, progress=False, energy=False)


def _graph_double(self, compiled: bool = False) -> None:
    """Stands in for the decode graph's capture on a CPU: eager decode, named as the graph engine."""
    self._setup_eager()


@pytest.fixture
def fake_cuda(monkeypatch):
    """Graphs "supported" on the CPU; the decode graph is the double above; captured prefills are counted."""
    monkeypatch.setattr(S, "graphs_supported", lambda device: True)
    monkeypatch.setattr(S.GenerationSession, "_setup_graph", _graph_double)
    calls = {"capture": 0, "replay": 0}

    def capture(error=None, scale=1.0):
        def fake(self, compiled):
            calls["capture"] += 1
            if error is not None:
                raise error

            def replay():
                calls["replay"] += 1
                return self._eager_prefill() * scale

            return replay

        monkeypatch.setattr(S.GenerationSession, "_capture_prefill", fake)
        return calls

    return capture


def test_cpu_default_is_eager_for_both_phases(tiny_llama):
    rep = measure_latency(tiny_llama, **FAST)
    assert rep.engines == {"prefill": "eager", "decode": "eager"}
    assert rep.to_dict()["engines"] == {"prefill": "eager", "decode": "eager"}
    assert "eager prefill · eager decode" in rep.to_text()


def test_captured_prefill_checked_and_used_for_ttft(tiny_llama, fake_cuda):
    calls = fake_cuda()
    rep = measure_latency(tiny_llama, cuda_graph=True, compile=False, phases=["ttft", "ttlt"], **FAST)
    assert rep.engines == {"prefill": "cuda-graph", "decode": "cuda-graph"}
    assert rep.prefill_check["rel_err"] == 0.0
    assert calls["capture"] == 1 and calls["replay"] == 1 + 2  # the check, then each shared request's prefill
    assert not any("captured prefill" in n for n in rep.notes)
    assert "cuda-graph prefill · cuda-graph decode" in rep.to_text()
    assert "checked against an eager prefill" in rep.to_text()


def test_a_prefill_that_differs_from_eager_falls_back_with_a_note(tiny_llama, fake_cuda):
    calls = fake_cuda(scale=-1.0)  # another greedy token: the check refuses it
    rep = measure_latency(tiny_llama, cuda_graph=True, compile=False, phases=["ttft"], **FAST)
    assert rep.engines == {"prefill": "eager", "decode": "cuda-graph"}
    assert calls["replay"] == 1  # the check only; TTFT ran on the eager prefill
    note = next(n for n in rep.notes if "captured prefill" in n)
    assert "prefill logits differ from eager" in note and note.endswith("eager prefill")


def test_a_capture_that_fails_falls_back_with_a_note(tiny_llama, fake_cuda):
    fake_cuda(error=RuntimeError("operation not permitted when stream is capturing"))
    rep = measure_latency(tiny_llama, cuda_graph=True, compile=False, phases=["ttft"], **FAST)
    assert rep.engines["prefill"] == "eager"
    assert any("captured prefill (cuda-graph) not used (RuntimeError: operation not permitted" in n for n in rep.notes)


def test_prefill_eager_keeps_plain_transformers_prefill(tiny_llama, fake_cuda):
    calls = fake_cuda()
    rep = measure_latency(tiny_llama, cuda_graph=True, compile=False, prefill="eager", phases=["ttft"], **FAST)
    assert calls["capture"] == 0 and rep.engines == {"prefill": "eager", "decode": "cuda-graph"}
    assert not any("captured prefill" in n for n in rep.notes)
    assert rep.envelope.settings["prefill"] == "eager"


def test_comparison_warns_when_the_prefill_engine_differs(tiny_llama, fake_cuda):
    fake_cuda()
    graph = measure_latency(tiny_llama, cuda_graph=True, compile=False, phases=["ttft"], label="graph", **FAST)
    eager = measure_latency(tiny_llama, cuda_graph=True, compile=False, prefill="eager", phases=["ttft"],
                            label="eager", **FAST)
    warnings = compare([graph, eager]).warnings
    assert any("prefill engine eager vs cuda-graph" in w for w in warnings), warnings


def test_magic_and_command_take_prefill(ip, tiny_llama):
    from IPython.core.error import UsageError

    from elana_magic.cli import build_parser

    ip.user_ns["m"] = tiny_llama
    rep = ip.run_line_magic("elana_latency", "m --ttft --prompt-len 8 --gen-len 2 --warmup 0 --repeats 2 "
                                             "--min-time 0 --no-energy --prefill eager -q -o")
    assert rep.envelope.settings["prefill"] == "eager" and rep.engines["prefill"] == "eager"
    with pytest.raises(UsageError):
        ip.run_line_magic("elana_latency", "m --prefill fast -q")
    assert "--prefill" in build_parser().format_help()


def test_session_prefill_double_keeps_tokens(tiny_llama, fake_cuda):
    fake_cuda()
    with S.GenerationSession(tiny_llama, batch=1, prompt_len=8, gen_len=3, cuda_graph=True) as s:
        assert s.engines == {"prefill": "cuda-graph", "decode": "cuda-graph"}
        captured = s.request()
    with S.GenerationSession(tiny_llama, batch=1, prompt_len=8, gen_len=3, cuda_graph=False) as s:
        assert torch.equal(captured, s.request())
