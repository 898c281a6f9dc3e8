"""ngpus=N: N replicas through torchrun (gloo on this CPU machine), the batch split across ranks, per-rank
rows and the combined figures; temp folder and processes gone afterwards, also on errors and Ctrl-C."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tempfile
import time

import pytest

from elana_magic.latency import GenerationInputError, measure_latency
from elana_magic.latency import replicas

FAST = dict(prompt_len=8, gen_len=4, warmup=0, repeats=2, min_time=0.0, energy_window_s=0.0, progress=False)


LEFTOVERS = ("elana-replicas-*", "torchelastic_*")  # ours, and the folder torchrun makes for every launch


def leftover_folders(folder: str) -> list[str]:
    return sorted(p for pattern in LEFTOVERS for p in glob.glob(os.path.join(folder, pattern)))


@pytest.fixture
def no_leftovers(tmp_path_factory, monkeypatch):
    """A temp folder of the test's own (TMPDIR, inherited by torchrun, the ranks and the command), so that other
    work on the machine can't add to it: no replica folder and no torchelastic_* folder is left in it."""
    private = str(tmp_path_factory.mktemp("tmpdir"))
    monkeypatch.setenv("TMPDIR", private)
    monkeypatch.setattr(tempfile, "tempdir", private)
    yield
    assert leftover_folders(private) == [], "a temporary folder was left behind"


@pytest.mark.slow  # starts torchrun and two ranks (~20 s on 2 cores)
def test_two_gloo_replicas_report_per_rank_and_combined(tiny_llama, no_leftovers):
    rep = measure_latency(tiny_llama, ngpus=2, batch=4, label="two", **{**FAST, "progress": True})
    assert isinstance(rep, replicas.ReplicaLatencyReport)
    d = rep.to_dict()
    assert (d["ngpus"], d["backend"], d["batch"], d["micro_batch"]) == (2, "gloo", 4, 2)
    assert [r["rank"] for r in d["ranks"]] == [0, 1] and d["devices"] == ["cpu", "cpu"]
    for key in ("ttft_ms", "tpot_ms", "ttlt_ms"):
        medians = [r[key]["median"] for r in d["ranks"]]
        assert all(m > 0 for m in medians)
        assert d[key]["median"] == max(medians)  # combined: the slowest rank
        assert d["combined"]["mean_of_rank_medians_ms"][key[:4]] == pytest.approx(sum(medians) / 2)
        assert d["ranks"][d["combined"][f"{key[:4]}_rank"]][key]["median"] == max(medians)
    assert d["tpot_ms"]["n"] == 2 * (4 - 1)  # 2 passes of gen_len-1 steps on the slowest rank
    assert d["energy"]["j_per_token"] is None and "RAPL cannot split" in d["energy"]["reason"]
    assert d["energy"]["tokens_per_s"] == pytest.approx(4 / (d["tpot_ms"]["median"] / 1e3))
    text = rep.to_text()
    assert "2 replicas" in text and "per rank (medians)" in text and "slowest rank" in text
    assert "per rank (medians)" in rep.to_html()
    json.loads(rep.to_json())
    frame = rep.to_dataframe()
    assert set(frame["rank"]) == {"combined", 0, 1}


def test_batch_must_split_over_the_ranks(tiny_llama, no_leftovers):
    with pytest.raises(GenerationInputError, match="batch 3 does not split over 2 replicas"):
        measure_latency(tiny_llama, ngpus=2, batch=3, **FAST)
    with pytest.raises(GenerationInputError, match="ngpus must be a positive integer"):
        measure_latency(tiny_llama, ngpus=0, **FAST)
    with pytest.raises(GenerationInputError, match="unknown phase"):  # checked before any process starts
        measure_latency(tiny_llama, ngpus=2, batch=2, phases=["ttfx"], **FAST)
    with pytest.raises(GenerationInputError, match="exceeds the model's maximum"):
        measure_latency(tiny_llama, ngpus=2, batch=2, **{**FAST, "prompt_len": 10**6})


@pytest.mark.slow  # starts torchrun and two ranks (~20 s on 2 cores)
def test_a_rank_error_comes_back_as_one_line(tiny_llama, no_leftovers):
    # the ranks load the model without a tokenizer, so a text prompt fails in every rank
    with pytest.raises(GenerationInputError, match="needs a tokenizer"):
        measure_latency(tiny_llama, ngpus=2, batch=2, prompt="hello", **FAST)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process tree from /proc")
def test_ctrl_c_stops_torchrun_and_its_ranks_and_removes_the_folder(tiny_llama, monkeypatch, no_leftovers):
    started, ranks = [], []
    real_popen = subprocess.Popen

    class InterruptedPopen(real_popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

        def wait(self, timeout=None):
            if timeout is None or timeout < 1:  # the caller's wait for the ranks: Ctrl-C once both ranks run
                deadline = time.monotonic() + 60
                while len(children(self.pid)) < 2 and time.monotonic() < deadline and self.poll() is None:
                    time.sleep(0.05)
                ranks.extend(children(self.pid))
                raise KeyboardInterrupt
            return super().wait(timeout)

    monkeypatch.setattr(replicas.subprocess, "Popen", InterruptedPopen)
    with pytest.raises(KeyboardInterrupt):
        measure_latency(tiny_llama, ngpus=2, batch=2, **FAST)
    assert len(started) == 1 and started[0].poll() is not None  # torchrun stopped
    assert len(ranks) == 2
    deadline = time.monotonic() + 10
    while any(alive(p) for p in ranks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in ranks), "a rank outlived Ctrl-C"


@pytest.mark.slow  # the command, then torchrun and two ranks
def test_the_command_with_ngpus_2_reports_per_rank_and_combined(tmp_path, no_leftovers):
    import sys

    from elana_magic.models import random_model

    folder = tmp_path / "tiny-llama"
    random_model("tiny-llama").save_pretrained(folder)
    out = subprocess.run([sys.executable, "-m", "elana_magic", str(folder), "--ttft", "--tpot", "--ttlt",
                          "--batch_size", "2", "--prompt_len", "8", "--gen_len", "4", "--repeats", "2",
                          "--warmup", "0", "--min-time", "0", "--ngpus", "2", "--json", str(tmp_path / "run.json")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "per rank (medians)" in out.stdout and "2 replicas" in out.stdout
    latency = json.loads((tmp_path / "run.json").read_text())["latency"]
    assert (latency["ngpus"], latency["backend"], latency["micro_batch"]) == (2, "gloo", 1)
    assert [r["rank"] for r in latency["ranks"]] == [0, 1]
    assert latency["tpot_ms"]["median"] == max(r["tpot_ms"]["median"] for r in latency["ranks"])


def test_the_command_refuses_a_batch_that_does_not_split(tmp_path):
    import sys

    out = subprocess.run([sys.executable, "-m", "elana_magic", "random:tiny-llama", "--ttft", "--batch_size", "3",
                          "--prompt_len", "8", "--gen_len", "2", "--ngpus", "2"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "elana-magic: batch 3 does not split over 2 replicas: give a multiple of 2 (the batch is global, as in ELANA)"]
