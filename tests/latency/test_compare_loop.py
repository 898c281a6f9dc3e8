"""Done-when: the loop a user runs in a notebook - measure, edit a copy, measure again, compare."""

from __future__ import annotations

import copy

from IPython.utils.capture import capture_output

from elana_magic.core.compare import condition_changes


def drop_a_third_of_the_layers(model):
    """A copy with the last third of its decoder layers dropped (the kept ones keep their layer index)."""
    pruned = copy.deepcopy(model)
    keep = 2 * len(pruned.model.layers) // 3
    pruned.model.layers = pruned.model.layers[:keep]
    pruned.config.num_hidden_layers = keep
    if getattr(pruned.config, "layer_types", None):
        pruned.config.layer_types = pruned.config.layer_types[:keep]
    return pruned


def test_measure_prune_measure_compare(ip, default_model):
    model = default_model.model
    ip.user_ns["model"] = model
    ip.user_ns["pruned"] = drop_a_third_of_the_layers(model)
    line = "--tpot --prompt-len 8 --gen-len 17 --no-energy --warmup 1 --repeats 5 --min-time 1 -q"
    ip.run_line_magic("elana_latency", f"model {line} --label base")
    ip.run_line_magic("elana_latency", f"pruned {line} --label pruned")
    with capture_output() as shown:
        comp = ip.run_line_magic("elana_compare", "base pruned -o")
    tpot = comp.ratio("TPOT")
    # two runs measured apart: load that starts or stops between them moves the ratio, so only the
    # verdict's form is asserted here; the paired rounds below are what finds the cut under load
    assert tpot.verdict.startswith("TPOT ") and tpot.ratio is not None, tpot
    base, pruned = comp.reports
    # what the two runs rested on is recorded, and a verdict stands only where it did not change
    changes = condition_changes(base.to_dict(), pruned.to_dict())
    assert all("other_busy_cores" in r.envelope.environment["conditions"] for r in comp.reports)
    if tpot.ci_low is not None:
        assert bool(tpot.withheld) == bool(changes) and (not changes or "no conclusion" in tpot.verdict), tpot
    assert base.fingerprint["hash"] != pruned.fingerprint["hash"]
    assert pruned.fingerprint["param_count"] < base.fingerprint["param_count"]
    assert pruned.fingerprint["layers"] == 2 * base.fingerprint["layers"] // 3
    assert comp.ratio("decode bytes/step").ratio < 1
    assert "TPOT" in shown.stdout + "".join(str(o.data) for o in shown.outputs)
    assert len(model.model.layers) == base.fingerprint["layers"]  # the original is untouched
    # alternating rounds: load falls on both alike where it changes slower than a round, so the rounds
    # are short (one pass of 8 steps per model) and many (on a 2-core CPU under 5x oversubscription,
    # 4 rounds of 1 s each gave per-round ratios 1.07, 0.68, 0.53, 0.37)
    paired = ip.run_line_magic("elana_latency", "model pruned --tpot --prompt-len 8 --gen-len 9 --no-energy "
                                                "--warmup 1 --repeats 8 --min-time 0 --rounds 8 "
                                                "--label base2,pruned2 -o -q")
    tpot = paired.ratio("TPOT")
    assert len(tpot.round_ratios) == 8 and not any("other conditions" in w for w in paired.warnings)
    assert tpot.ratio < 1 and tpot.ci_high < 1, (tpot, paired.to_text())
