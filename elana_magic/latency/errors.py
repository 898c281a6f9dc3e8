"""The latency measurement's two expected failures, each one line (the magics turn them into ``UsageError``)."""

from __future__ import annotations

from ..core.errors import ElanaError


class GenerationInputError(ElanaError, ValueError):
    """Lengths, options, model or prompt that cannot be measured (one line, for UsageError)."""


class GenerationOutOfMemory(ElanaError, RuntimeError):
    """The batch and length did not fit in device memory (one line; memory already released)."""
