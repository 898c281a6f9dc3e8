"""%load_ext elana_magic: registers the magics, a second load is a no-op, unload removes them."""

from __future__ import annotations

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


def test_every_registered_magic_is_real(session_ip):
    """No magic that only says 'not yet': each one has a docstring and options."""
    session_ip.run_line_magic("load_ext", "elana_magic")
    for name in _our_magics():
        func = session_ip.find_magic(name)
        assert func.__doc__ and "not yet" not in func.__doc__.lower()


def test_magics_work_without_the_extension_loaded_state_leaking(ip, tiny_llama):
    ip.user_ns["m"] = tiny_llama
    with capture_output():
        report = ip.run_line_magic("elana_size", "m --seq-len 8 -o")
    assert report.rows[0]["cache_bytes"] > 0
