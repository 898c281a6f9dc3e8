"""Issue 22, one way in and one way out, checked on the package's source: one ``one_line``, one error base
that every error a user can cause subclasses, one model resolver, and measurement code that builds no view."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import elana_magic
from elana_magic.core.errors import ElanaError

ROOT = Path(elana_magic.__file__).parent
# not errors a user causes: the cell's own error carried out of the profiler (already shown), and Ctrl-C
# after a complete trace was written (a KeyboardInterrupt that keeps the trace's path)
NOT_USER_ERRORS = {"elana_magic.magics.profile._CellFailed", "elana_magic.profile.capture.ProfileInterrupted",
                   "elana_magic.energy.jetson.JtopLost"}  # jtop lost mid-run: caught, the rails go on from sysfs


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in ROOT.rglob("*.py")}


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function, as dotted names under the package."""
    package = ".".join(("elana_magic", *path.relative_to(ROOT).parent.parts))
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_one_line_is_defined_once():
    found = [(p.name, m) for p, text in _sources().items() for m in re.findall(r"^\s*def (_?one_line)\(", text, re.M)]
    assert found == [("errors.py", "one_line")], found


def test_one_path_rule_and_one_hub_probe():
    for pattern in (r"def _?looks_like_path\(", r"def _?is_path\(", r"def _?reachable\(", r"def _?hub_offline\(",
                    r"def _?load_config\(", r"def _?load_model\(", r"def _?load_tokenizer\("):
        where = [p.relative_to(ROOT).as_posix() for p, text in _sources().items() if re.search(pattern, text)]
        assert where in ([], ["loading.py"]), (pattern, where)


def test_models_and_size_do_not_import_each_others_private_names():
    for path, other in ((ROOT / "models.py", "elana_magic.size"), (ROOT / "size" / "measure.py", "elana_magic.models")):
        imported = _imported_modules(path)
        assert not {m for m in imported if m.startswith(other) and m.rsplit(".", 1)[-1].startswith("_")}, imported
    assert not {m for m in _imported_modules(ROOT / "models.py") if m.startswith("elana_magic.size")}


def test_every_error_a_user_can_cause_has_one_base():
    errors = []
    for info in pkgutil.walk_packages([str(ROOT)], prefix="elana_magic."):
        if info.name == "elana_magic.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == info.name and issubclass(cls, BaseException) and not issubclass(cls, Warning)
                    and f"{info.name}.{name}" not in NOT_USER_ERRORS):
                errors.append(cls)
    names = {cls.__name__ for cls in errors}
    assert {"CommandInputError", "ProfileError", "SizeError", "ModelLoadError", "CompareError", "ReportFileError",
            "SchemaError", "OptionError", "GenerationInputError", "GenerationOutOfMemory", "ReplicaError"} <= names
    assert [c.__name__ for c in errors if not issubclass(c, ElanaError)] == []
    # the old second bases stay, for code that catches them
    from elana_magic.latency.errors import GenerationOutOfMemory
    from elana_magic.size import SizeError

    assert issubclass(SizeError, ValueError) and issubclass(GenerationOutOfMemory, RuntimeError)


def test_latency_builds_no_view():
    """Measurement code reports through ``core.progress``; only the magics build the live view."""
    for path in (ROOT / "latency").glob("*.py"):
        imported = _imported_modules(path)
        assert not {m for m in imported if m.startswith("elana_magic.core.live")}, path.name
        assert "hasattr(progress" not in path.read_text(), path.name
