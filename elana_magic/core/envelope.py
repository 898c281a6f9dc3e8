"""The envelope every report carries, and reading a saved report back.

Every report's ``to_dict()`` starts with the same keys: ``kind`` (size / energy / latency / profile),
``format_version`` (``FORMAT_VERSION``: how the rest is laid out), ``label``, ``created`` (UTC ISO 8601),
``settings`` (the arguments that made it), ``fingerprint``
(``core.fingerprint``), ``environment`` (``core.environment``), ``notes`` and ``warnings``; the
measurement's own figures follow. ``load_report`` turns such a dict (or a file holding its JSON)
back into the report class its ``kind`` names, after checking it against its kind's ``schema``
(``core.schema``): a saved report that is not one, or that a newer release wrote, is refused with one
line naming the field.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ElanaError

ENVELOPE_KEYS = ("kind", "format_version", "label", "created", "settings", "fingerprint", "environment", "notes",
                 "warnings")

# The layout of a saved report. Raise it when a field changes meaning or type (not when one is added),
# so that an older release refuses the file instead of misreading it. Files without it are version 1.
FORMAT_VERSION = 1

# kind -> report class; filled by Report.__init_subclass__
REPORT_KINDS: dict[str, type] = {}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Envelope:
    """What made a report, where it ran and what model it measured (``label``/``notes`` live on the report)."""

    created: str = field(default_factory=utc_now)
    settings: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Envelope":
        return cls(created=data.get("created") or utc_now(), settings=dict(data.get("settings") or {}),
                   fingerprint=data.get("fingerprint"), environment=data.get("environment"),
                   warnings=list(data.get("envelope_warnings") or []))


class ReportFileError(ElanaError, ValueError):
    """A file or dict that is not a saved elana report; the message is one line."""


def _check_version(data: dict[str, Any]) -> None:
    from .._version import __version__

    version = data.get("format_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        environment = data.get("environment")
        saved_by = environment.get("elana_magic") if isinstance(environment, dict) else None
        raise ReportFileError(f"saved by elana-magic {saved_by or 'a newer release'} (report format {version}); "
                              f"this is {__version__} (format {FORMAT_VERSION}): upgrade elana-magic to read it")


def report_from_dict(data: dict[str, Any]):
    """The report a ``to_dict()`` (or its JSON) describes, as its own class; ``ReportFileError`` (one line,
    naming the field) when it is not a report this release can read."""
    from .schema import ENVELOPE, SchemaError, check

    if not isinstance(data, dict) or "kind" not in data:
        raise ReportFileError("not a saved elana report: no 'kind' field (save one with report.to_json())")
    _check_version(data)
    cls = REPORT_KINDS.get(data["kind"]) if isinstance(data["kind"], str) else None
    if cls is None:  # the kinds register themselves on import: elana_magic.reports imports every one
        known = ", ".join(sorted(REPORT_KINDS)) or "none registered (import elana_magic.reports)"
        raise ReportFileError(f"unknown report kind {data['kind']!r}: expected one of {known}")
    try:
        check(data, ENVELOPE)
        check(data, cls.schema)
    except SchemaError as exc:
        raise ReportFileError(f"{data['kind']} report: {exc}") from None
    try:
        report = cls.from_dict(data)
        report.envelope = Envelope.from_dict(data)
        report.headline_figures()  # what %elana_history shows must work before the report joins it
        report.to_text()
    except ReportFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        problem = f"field {exc.args[0]!r} is missing" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ReportFileError(f"{data['kind']} report cannot be read: {problem}") from None
    return report


def load_report(path: str | os.PathLike):
    """Read a report saved with ``report.save(path)`` / ``to_json()`` back (its class from ``kind``)."""
    path = os.path.expanduser(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ReportFileError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportFileError(f"{path!r} is not JSON ({exc.msg} at line {exc.lineno}): "
                              "pass a file written by report.save()") from None
    try:
        return report_from_dict(data)
    except ReportFileError as exc:
        raise ReportFileError(f"{path!r}: {exc}") from None
