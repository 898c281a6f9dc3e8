"""Issue 21: figures that hold when the machine changes. A controlled background load (processes spinning
on every core, bounded in time, always ended) starts between two measurements of the same model: the
comparison names the change and gives no confident difference. Under that same load, paired rounds still
find a layer cut, and a paired run of too few rounds says so instead of printing an interval."""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
import time

import pytest

from elana_magic.core.conditions import usable_cores
from elana_magic.core.stats import MIN_ROUNDS
from elana_magic.latency import measure_latency, measure_paired

FAST = dict(phases=["tpot"], prompt_len=8, gen_len=9, warmup=1, repeats=20, min_time=0.5, progress=False,
            energy=False)
LOAD_LIMIT_S = 45.0   # a spinner ends by itself after this, whatever happens to the test


def _spin(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


@contextlib.contextmanager
def background_load(processes: int | None = None):
    """One spinning process per usable core (fork: no re-import), ended on exit, even on failure. Where
    other work already keeps every core busy the busy cores can't grow, but our threads' waits for a
    core do, and those are recorded too."""
    ctx = multiprocessing.get_context("fork")
    deadline = time.monotonic() + LOAD_LIMIT_S
    procs = [ctx.Process(target=_spin, args=(deadline,), daemon=True)
             for _ in range(processes or len(usable_cores()))]
    try:
        for p in procs:
            p.start()
        time.sleep(0.2)   # let them reach their cores
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


def _conditions(rep) -> dict:
    return rep.envelope.environment["conditions"]


@pytest.fixture(scope="module")
def six_layers():
    """tiny-llama with 6 layers, so that a cut to 2 outweighs the step's fixed cost (embedding, head, Python)."""
    from elana_magic.models import preset_config, random_model

    config = preset_config("tiny-llama")
    config.num_hidden_layers = 6
    return random_model(config)


@pytest.fixture
def pruned(six_layers):
    model = copy.deepcopy(six_layers)
    model.model.layers = model.model.layers[:2]
    model.config.num_hidden_layers = 2
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:2]
    return model


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the host's load is read from /proc/stat")
def test_load_that_starts_between_runs_is_named_and_paired_rounds_still_find_the_cut(six_layers, pruned):
    from elana_magic.core.compare import compare

    quiet = measure_latency(six_layers, label="quiet", **FAST)
    with background_load() as procs:
        loaded = measure_latency(six_layers, label="loaded", **FAST)
        # short rounds, many: A and B of a round run close together, under the same load
        paired = measure_paired([six_layers, pruned], labels=["full", "cut"], rounds=8,
                                **{**FAST, "gen_len": 17, "repeats": 8, "min_time": 0.0})
        too_few = measure_paired([six_layers, pruned], labels=["full", "cut"], rounds=2,
                                 **{**FAST, "repeats": 4, "min_time": 0.1})
    assert not any(p.is_alive() for p in procs)
    # the same model measured apart: whatever the numbers, the changed load is named and nothing concluded
    comp = compare([quiet, loaded])
    print({k: (_conditions(quiet).get(k), _conditions(loaded).get(k)) for k in ("other_busy_cores", "cpu_wait_ratio")})
    tpot = comp.ratio("TPOT")
    assert any("host load changed between the runs" in w for w in comp.warnings), comp.warnings
    assert tpot.withheld and not tpot.significant and "no conclusion" in tpot.verdict, tpot
    assert "%elana_latency quiet loaded --rounds" in tpot.verdict
    # the same load on both sides, alternating rounds: the cut is found
    cut = paired.ratio("TPOT")
    assert cut.withheld is None and cut.ratio < 1 and cut.ci_high < 1, (cut, paired.to_text())
    assert not any("other conditions" in w for w in paired.warnings)
    # two rounds: no interval, and how many would give one
    few = too_few.ratio("TPOT")
    assert few.ci_low is None and few.ci_high is None
    assert f"2 paired rounds give no interval: {MIN_ROUNDS} or more do" in few.verdict, few.verdict
