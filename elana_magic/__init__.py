"""elana-magic: what an LLM costs (size, latency, energy, kernels), measured in the notebook.

    %load_ext elana_magic

The plain Python API works without IPython; the magics are a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"


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
