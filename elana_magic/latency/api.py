"""The latency API and its dispatcher: one ``LatencySettings`` decides a single run, a grid, replicas or
paired rounds, above the runners (``measure.run_single``, ``grid.run_grid``, ``replicas.measure_replicas``,
``measure.Measurement`` for rounds); no runner calls back up here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch

from ..core.progress import as_progress
from ..core.threads import cpu_threads
from . import measure as runner
from .cooldown import Cooldown
from .devices import cuda_indices
from .errors import GenerationInputError
from .inputs import model_device
from .settings import LatencySettings, settings_from


def measure_latency(model: torch.nn.Module | str, tokenizer: Any = None, *, settings: LatencySettings | None = None,
                    meter: Any = None, progress: Any = True, **options: Any):
    """Measure TTFT / TPOT / TTLT (any subset of ``phases``) of ``model`` as loaded.

    ``options``: the fields of ``LatencySettings`` (phases, batch, prompt_len, gen_len, warmup, repeats,
    min_time, energy, energy_window_s, cuda_graph, compile, prefill, ngpus, label, prompt, peak_bw,
    peak_flops, ...), or ``settings=`` one made already; every value is checked before any model work.
    ``meter``: an open ``EnergyMeter`` to reuse (left open). ``progress``: True = a tqdm bar in a terminal
    (none in a notebook); a ``core.progress.Progress`` to report into (the magics pass their live view,
    ``core.live.LiveView``); False = none.

    Lists of ``batch`` / ``prompt_len`` / ``gen_len``: every cell of the grid (a ``LatencyGridReport``).
    ``ngpus=N`` (N > 1): N replicas through torchrun, the batch split across them (``model`` may then be a
    model folder; a ``ReplicaLatencyReport``). Otherwise a ``LatencyReport``."""
    settings = settings if settings is not None else settings_from(options)
    if settings.ngpus > 1:
        from .replicas import measure_replicas

        if meter is not None:
            raise GenerationInputError("ngpus: each replica opens its own energy meter; do not pass meter=")
        return measure_replicas(model, settings, tokenizer=tokenizer, progress=progress)
    if settings.is_grid:
        from .grid import run_grid

        return run_grid(model, settings, tokenizer=tokenizer, meter=meter, progress=progress)
    return runner.run_single(model, settings, tokenizer=tokenizer, meter=meter, progress=progress)


def measure_paired(models: Sequence[torch.nn.Module], labels: Sequence[str] | None = None, *,
                   settings: LatencySettings | None = None, meter: Any = None, progress: Any = True,
                   **options: Any):
    """Measure several models in alternating rounds (A B, B A, A B, ...) in one call, so that drifting
    clocks and temperature fall on all of them alike; returns the ``Comparison`` of their pooled
    reports (``.reports``, the first model is the baseline; ``.rounds`` and each report's ``rounds``
    record the order). ``rounds`` (a setting) alternations; ``min_time`` and ``repeats`` are per model,
    spread over the rounds; the other options are those of ``measure_latency``. Each model keeps its
    session (cache, graph) open across rounds, and one energy meter serves them all.

    The usual edits, each made on a copy so the original stays as it was::

        import copy
        half = copy.deepcopy(model).to(torch.bfloat16)                      # another dtype
        pruned = copy.deepcopy(model)                                       # dropped layers
        pruned.model.layers = pruned.model.layers[: 2 * len(pruned.model.layers) // 3]
        pruned.config.num_hidden_layers = len(pruned.model.layers)
        eager = copy.deepcopy(model); eager.set_attn_implementation("eager")   # another attention
        comparison = measure_paired([model, pruned], labels=["base", "pruned"])
    """
    from ..core.compare import compare

    settings = settings if settings is not None else settings_from(options)
    models, labels = _paired_models(models, labels, settings)
    rounds = settings.rounds
    devices = list(dict.fromkeys(model_device(m) for m in models))
    own_meter = meter is None
    why = None
    if own_meter:
        meter, why = runner._open_meter(settings.energy, devices, [])
    progress = as_progress(progress)  # one reporter for every model
    # the idle power and temperature are read now, before any model runs (cooldown="auto" waits back to them)
    cooldown = Cooldown(settings.cooldown, cuda_indices(devices))
    runs = [runner.Measurement(m, settings.replace(label=lab), meter=meter, progress=progress, rounds=rounds,
                               open_meter=False) for m, lab in zip(models, labels)]
    for run in runs:
        if why and settings.energy is not False:
            run.notes.append(why)
            run.why_no_energy = why
    try:
        with cooldown:
            order = _alternate(runs, labels, rounds, cooldown)
    finally:
        if own_meter and meter is not None:
            meter.close()
    reports = [run.report() for run in runs]
    section = cooldown.section()
    for rep in reports:
        rep.rounds = list(order)
        rep.notes.extend(cooldown.notes)
        if section is not None:
            rep.extra["rounds_conditions"] = section
        rep.notes.append(f"paired with {', '.join(x for x in labels if x != rep.label)}: "
                         f"{rounds} alternating rounds")
    comparison = compare(reports, labels=labels)
    comparison.rounds = order
    return comparison


def _paired_models(models, labels, settings: LatencySettings) -> tuple[list, list[str]]:
    models = list(models)
    if len(models) < 2:
        raise GenerationInputError(f"paired mode needs at least two models, got {len(models)}")
    if len({id(m) for m in models}) < len(models):
        raise GenerationInputError("the same model is given twice: compare a copy (copy.deepcopy(model)) "
                                   "that you edited")
    if settings.is_grid or settings.ngpus > 1:
        raise GenerationInputError("a paired A/B takes one batch, prompt and gen length, on one GPU each")
    labels = list(labels) if labels else [f"model {chr(65 + i)}" if i < 26 else f"model {i}" for i in range(len(models))]
    if len(labels) != len(models) or len(set(labels)) != len(labels):
        raise GenerationInputError(f"give one distinct label per model ({len(models)} models, labels {labels})")
    return models, labels


def _alternate(runs: list, labels: list[str], rounds: int, cooldown: Cooldown) -> list[str]:
    """Every model keeps its session open; the order rotates each round (A B, B A, ...) so that no model
    always runs after another; ``cooldown`` waits (and records the GPU's state) before each model's round.
    Returns the order that ran."""
    order: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(cpu_threads([run.device for run in runs]))   # one thread choice for every model
        for run in runs:
            stack.enter_context(run)
        for i in range(rounds):
            turn = i % len(runs)
            for run, lab in list(zip(runs, labels))[turn:] + list(zip(runs, labels))[:turn]:
                cooldown.before(label=lab)
                run.run_round()
                order.append(lab)
    return order


def measure_grid(model: torch.nn.Module, tokenizer: Any = None, *, settings: LatencySettings | None = None,
                 meter: Any = None, progress: Any = True, **options: Any):
    """Every cell of batch x prompt_len x gen_len (one value each: a grid of one cell) -> ``LatencyGridReport``."""
    from .grid import run_grid

    settings = settings if settings is not None else settings_from(options)
    return run_grid(model, settings, tokenizer=tokenizer, meter=meter, progress=progress)
