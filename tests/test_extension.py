"""%load_ext elana_magic: registers the magics, a second load is a no-op, unload removes them."""

from __future__ import annotations

import pytest

from IPython.utils.capture import capture_output

from elana_magic.magics import magic_classes


def _our_magics() -> list[str]:
    return [name for cls in magic_classes() for names in cls.magics.values() for name in names]


def test_load_unload_reload(session_ip):
    ip = session_ip
    names = _our_magics()
    assert "elana_size" in names
    ip.run_line_magic("load_ext", "elana_magic")  # may already be loaded by another test
    assert all(ip.find_magic(n) is not None for n in names)
    with capture_output() as cap:
        ip.run_line_magic("load_ext", "elana_magic")
    assert "already loaded" in cap.stdout
    ip.run_line_magic("unload_ext", "elana_magic")
    assert all(ip.find_magic(n) is None for n in names)
    ip.run_line_magic("load_ext", "elana_magic")
    assert all(ip.find_magic(n) is not None for n in names)
    ip.run_line_magic("reload_ext", "elana_magic")
    assert all(ip.find_magic(n) is not None for n in names)


# %elana_energy takes a statement after its options (as %timeit does): a bad value, not a bad name
BAD_LINES = {"elana_energy": "--min-time -1 pass"}


def test_every_registered_magic_is_real(session_ip):
    """No magic that only says 'not yet': each parses real options, shows its own use, and answers a
    bad option with one UsageError line."""
    from IPython.core.error import UsageError

    session_ip.run_line_magic("load_ext", "elana_magic")
    names = _our_magics()
    assert {"elana_size", "elana_latency", "elana_energy", "elana_profile", "elana_history", "elana_compare"} <= set(names)
    for name in names:
        func = session_ip.find_magic(name)
        doc = func.__doc__ or ""
        assert "not yet" not in doc.lower() and f"%{name}" in doc, name   # an example of its own use
        options = [a for a in func.parser._actions if a.option_strings and "-h" not in a.option_strings]
        assert len(options) >= 2, name
        bad = BAD_LINES.get(name, "--no-such-option")
        with pytest.raises(UsageError):
            session_ip.run_line_magic(name, bad)


def test_magics_work_without_the_extension_loaded_state_leaking(ip, tiny_llama):
    ip.user_ns["m"] = tiny_llama
    with capture_output():
        report = ip.run_line_magic("elana_size", "m --seq-len 8 -o")
    assert report.rows[0]["cache_bytes"] > 0
