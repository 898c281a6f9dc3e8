"""Formatting of bytes, times, energy and power for reports (SI by default, binary on request)."""

from __future__ import annotations

_SI = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
_BIN = [(2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")]


def format_bytes(n: float | int | None, binary: bool = False, digits: int = 3) -> str:
    """``1234567890`` -> ``'1.235 GB'`` (SI) or ``'1.150 GiB'`` (binary)."""
    if n is None:
        return "-"
    for scale, unit in _BIN if binary else _SI:
        if abs(n) >= scale:
            return f"{n / scale:.{digits}f} {unit}"
    return f"{int(n)} B"


def bytes_unit(n: float | int, binary: bool = False) -> tuple[float, str]:
    """The unit that shows ``n`` bytes as a number >= 1: (bytes per unit, name), e.g. (1e6, 'MB')."""
    for scale, unit in _BIN if binary else _SI:
        if abs(n) >= scale:
            return scale, unit
    return 1.0, "B"


def format_time(seconds: float | None, digits: int = 3) -> str:
    """Seconds -> the most readable of s, ms, µs, ns."""
    if seconds is None:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.{digits}g} {unit}"
    return f"{seconds * 1e9:.{digits}g} ns"


_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
_ENERGY_UNITS = ((1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"))


def column_formatter(values: list[float | None], units=_TIME_UNITS, digits: int = 4):
    """One unit for a whole table column: every cell in ms, or every cell in s, never a column that
    mixes them. The largest value's unit, or the next smaller one where the smallest value would read
    below 0.01 in it. Returns value -> text ("-" for None)."""
    known = [abs(v) for v in values if v is not None and v != 0]
    i = len(units) - 1
    if known:
        i = next((k for k, (s, _) in enumerate(units) if max(known) >= s), len(units) - 1)
        if min(known) / units[i][0] < 0.01 and i + 1 < len(units):
            i += 1
    scale, unit = units[i]

    def fmt(v: float | None) -> str:
        if v is None:
            return "-"
        x = v / scale
        return f"{x:,.0f} {unit}" if abs(x) >= 10 ** digits else f"{x:.{digits}g} {unit}"

    return fmt


def energy_column(values: list[float | None], digits: int = 4):
    """``column_formatter`` for joules."""
    return column_formatter(values, _ENERGY_UNITS, digits)


def bytes_column(values: list[float | None], binary: bool = False, digits: int = 4):
    """``column_formatter`` for bytes (SI, or binary units on request)."""
    return column_formatter(values, tuple(_BIN if binary else _SI) + ((1.0, "B"),), digits)


def format_energy(joules: float | None, digits: int = 4) -> str:
    if joules is None:
        return "-"
    if abs(joules) >= 1e3:
        return f"{joules / 1e3:.{digits}g} kJ"
    if abs(joules) < 1 and joules != 0:
        return f"{joules * 1e3:.{digits}g} mJ"
    return f"{joules:.{digits}g} J"


def format_power(watts: float | None, digits: int = 4) -> str:
    return "-" if watts is None else f"{watts:.{digits}g} W"
