"""IPython magics: one module (and one Magics class) per measurement."""

from __future__ import annotations


def magic_classes() -> list[type]:
    """The Magics classes that ``%load_ext elana_magic`` registers."""
    from ..reports import KINDS  # noqa: F401 - every kind registered before a saved report is read
    from .compare import CompareMagics
    from .energy import EnergyMagics
    from .latency import LatencyMagics
    from .profile import ProfileMagics
    from .size import SizeMagics

    return [SizeMagics, ProfileMagics, EnergyMagics, LatencyMagics, CompareMagics]
