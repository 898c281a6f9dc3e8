"""The argument fuzz suite's case counter, printed at the end of the session whatever ``-s`` says."""

from __future__ import annotations

import collections

import pytest

_CASES = pytest.StashKey[collections.Counter]()


@pytest.fixture
def fuzz_cases(pytestconfig) -> collections.Counter:
    """Counts generated cases as ``(target, outcome)``; the terminal summary prints them."""
    return pytestconfig.stash.setdefault(_CASES, collections.Counter())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cases = config.stash.get(_CASES, None)
    if not cases:
        return
    targets = sorted({target for target, _ in cases})
    detail = "; ".join(f"{t}: " + ", ".join(f"{n} {outcome}" for (t2, outcome), n in sorted(cases.items()) if t2 == t)
                       for t in targets)
    terminalreporter.write_line(f"argument fuzz: {sum(cases.values())} generated cases ({detail})")
