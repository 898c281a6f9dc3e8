"""elana-magic: what an LLM costs (size, latency, energy, kernels), measured in the notebook.

    %load_ext elana_magic

The plain Python API works without IPython; the magics are a thin layer over it.
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__", "compare", "history", "load_ipython_extension", "load_report", "project",
           "unload_ipython_extension"]


def history():
    """The reports this kernel's magics produced (``History``: ``[i]``, ``["label"]``, ``save``, ``load``,
    ``to_dataframe``)."""
    from .reports import KINDS  # noqa: F401 - every kind registered, for --load of saved lines
    from .core.history import history as _history

    return _history()


def compare(*items, noise_threshold: float | None = None):
    """Compare reports (or history indices / labels / saved files) with the first: a ``Comparison``.
    A change whose interval reaches inside ±``noise_threshold`` (default 1%) is called noise."""
    from .reports import KINDS  # noqa: F401 - every kind registered, for saved files among the items
    from .core.compare import compare as _compare
    from .core.history import find_report
    from .core.stats import NOISE_THRESHOLD

    noise = NOISE_THRESHOLD if noise_threshold is None else noise_threshold
    return _compare([find_report(i) for i in items], noise_threshold=noise)


def load_report(path):
    """A report saved with ``report.save(path)`` (or ``to_json()``), as its own class."""
    from .reports import KINDS  # noqa: F401 - every kind registered
    from .core.envelope import load_report as _load

    return _load(path)


def project(report, targets, *, peak_bw=None, peak_flops=None, label=None):
    """Project a latency report (a report, its dict or a saved file) to other GPUs of the peaks table:
    ``project("run.json", ["H100", "L4", "Jetson AGX Orin"])`` -> a ``ProjectionReport`` (projections from
    the measured MBU/MFU, with their range and memory fit, not measurements)."""
    from .reports import KINDS  # noqa: F401 - every kind registered, for a saved file
    from .latency.projection import project as _project

    return _project(report, targets, peak_bw=peak_bw, peak_flops=peak_flops, label=label)


def load_ipython_extension(ipython) -> None:
    """Register the magics (called by ``%load_ext elana_magic``)."""
    from .magics import magic_classes

    for cls in magic_classes():
        ipython.register_magics(cls)


def unload_ipython_extension(ipython) -> None:
    """Remove the magics (called by ``%unload_ext``/``%reload_ext``) and close the energy meters they opened."""
    from .magics import magic_classes
    from .magics.energy import close_meters

    close_meters()

    manager = ipython.magics_manager
    for cls in magic_classes():
        for kind, names in cls.magics.items():
            for name in names:
                manager.magics[kind].pop(name, None)
        manager.registry.pop(cls.__name__, None)
