"""IPython magics: one module (and one Magics class) per measurement."""

from __future__ import annotations


def magic_classes() -> list[type]:
    """The Magics classes that ``%load_ext elana_magic`` registers."""
    from .size import SizeMagics

    return [SizeMagics]
