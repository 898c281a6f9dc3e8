"""Shared fixtures: a real IPython shell with the extension loaded, and small models."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

import pytest

_OWN_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """The embedded model's de-quantized copy goes to a temporary cache, removed at the end, so the
    suite leaves nothing in ~/.cache/elana-magic (subprocesses and kernels inherit it). A cache the
    caller chose (``ELANA_MAGIC_CACHE`` set) is used as it is."""
    if not os.environ.get("ELANA_MAGIC_CACHE"):
        config.stash[_OWN_CACHE] = os.environ["ELANA_MAGIC_CACHE"] = tempfile.mkdtemp(prefix="elana-magic-cache-")


def pytest_unconfigure(config):
    own = config.stash.get(_OWN_CACHE, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)
        os.environ.pop("ELANA_MAGIC_CACHE", None)


@pytest.fixture(scope="session")
def session_ip():
    from IPython.testing.globalipapp import get_ipython

    return get_ipython()


@pytest.fixture
def ip(session_ip):
    """The shell with elana_magic loaded; HTML reprs captured too; namespace reset afterwards."""
    session_ip.run_line_magic("load_ext", "elana_magic")
    formatter = session_ip.display_formatter
    saved = list(formatter.active_types)
    formatter.active_types = ["text/plain", "text/html"]
    yield session_ip
    formatter.active_types = saved
    session_ip.run_line_magic("reset", "-f")


@pytest.fixture(autouse=True)
def fresh_history():
    """Each test starts with an empty kernel history (the magics add every report to it)."""
    from elana_magic.core.history import HISTORY

    HISTORY.clear()
    yield
    HISTORY.clear()


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Every test must leave no thread of ours behind (samplers, loggers)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("elana")]
    assert not leftover, f"threads left running: {[t.name for t in leftover]}"


@pytest.fixture(scope="session")
def tiny_llama():
    from elana_magic.models import random_model

    return random_model("tiny-llama")


@pytest.fixture(scope="session")
def default_model():
    """The embedded SmolLM2 (real weights) - loaded once per test session (~30 s on a CPU)."""
    from elana_magic.models import default_model

    return default_model()


@pytest.fixture
def no_nvml(monkeypatch):
    """No NVML library, no amdsmi, no Jetson rails, no RAPL: a machine without any energy sensor."""
    import sys

    from elana_magic.energy import jetson, nvml, rapl

    class NoLibrary:
        def nvmlInit(self):
            raise OSError("NVML Shared Library Not Found")

    monkeypatch.setattr(nvml, "_module", NoLibrary())
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # `import amdsmi` fails, even where ROCm is installed
    monkeypatch.setattr(jetson, "SYSFS_ROOT", "/nonexistent-sys")
    monkeypatch.setattr(rapl, "POWERCAP_ROOT", "/nonexistent-powercap")


@pytest.fixture
def constant_power():
    """The class of a sensor double: a 50 W board with a cumulative joule counter and instant power."""
    import time

    from elana_magic.energy.sensor import Reading, Sensor

    class ConstantPower(Sensor):
        name, kind, method, has_counter = "fake-gpu", "gpu", "test double: 50 W", True

        def __init__(self):
            self.t0 = time.perf_counter()

        def read(self) -> Reading:
            t = time.perf_counter()
            return Reading(t, 50.0 * (t - self.t0), 50.0)

    return ConstantPower
