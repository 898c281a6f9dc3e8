"""The latency measurement's two expected failures, each one line (the magics turn them into ``UsageError``)."""

from __future__ import annotations


class GenerationInputError(ValueError):
    """Lengths, options, model or prompt that cannot be measured (one line, for UsageError)."""


class GenerationOutOfMemory(RuntimeError):
    """The batch and length did not fit in device memory (one line; memory already released)."""
