"""Shared fixtures for the profile tests."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest


@pytest.fixture(scope="session")
def synthetic_trace():
    """``synthetic_trace(n)``: the benchmark's synthetic Kineto-format trace of ``n`` GPU events."""
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "timeline_speed.py"
    spec = importlib.util.spec_from_file_location("timeline_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_trace
