"""No import cycle in the package: the module-level import graph is acyclic; with the imports made inside
functions too, no cycle runs through a latency module (among them, or between latency and the rest) other than
core's documented reaches outward; and every module imports on its own, first, in a fresh interpreter (so no
module works only because another was imported before)."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import elana_magic

ROOT = Path(elana_magic.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {"elana_magic": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="elana_magic."):
        path = ROOT.joinpath(*info.name.split(".")[1:])
        mods[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return mods


def _module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``name`` imports when it is executed (imports inside functions excluded)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    out: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                out.update(_from_targets(node, package, known))
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                visit(getattr(node, "body", []) + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
                      + [s for h in getattr(node, "handlers", []) for s in h.body])
            elif isinstance(node, ast.ClassDef):
                visit(node.body)  # class bodies run at import time

    visit(tree.body)
    out.discard(name)
    return out


def _all_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules that ``name`` imports anywhere: at module level and inside functions (every statement)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            out.update(_from_targets(node, package, known))
    out.discard(name)
    return out


def _from_targets(node: ast.ImportFrom, package: str, known: set[str]) -> set[str]:
    if node.level:
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        if sub in known:
            out.add(sub)
        elif target in known:
            out.add(target)
    return out


# core's reaches outward, inside the function only (docs/ARCHITECTURE.md): the fingerprint counts weights, the
# environment reads NVML, the option spec checks a dtype. The report kinds register themselves
# (elana_magic.reports imports them all): core imports none of them.
CORE_REACHES = {("elana_magic.core.fingerprint", "elana_magic.size.weights"),
                ("elana_magic.core.environment", "elana_magic.energy.nvml"),
                ("elana_magic.core.options", "elana_magic.size.weights")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (every cycle lies inside one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            comp = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                comp.append(top)
                if top == node:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_module_level_import_graph_is_acyclic():
    mods = _modules()
    assert {"elana_magic.core.report", "elana_magic.core.compare", "elana_magic.size.weights",
            "elana_magic.magics.compare", "elana_magic.latency.roofline"} <= set(mods)
    graph = {name: _module_level_imports(name, path, set(mods)) for name, path in mods.items()}
    assert "elana_magic.core.report" in graph["elana_magic.size.report"]  # the parser sees relative imports
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_through_latency_with_imports_inside_functions():
    mods = _modules()
    graph = {name: _all_imports(name, path, set(mods)) for name, path in mods.items()}
    assert "elana_magic.latency.grid" in graph["elana_magic.latency.api"]  # an import inside a function is seen
    graph = {name: {m for m in deps if (name, m) not in CORE_REACHES} for name, deps in graph.items()}
    latency = [c for c in _cycles(graph) if any(m.startswith("elana_magic.latency") for m in c)]
    assert not latency, f"import cycles through latency: {latency}"
    inside = {n: {m for m in deps if m.startswith("elana_magic.latency")} for n, deps in graph.items()
              if n.startswith("elana_magic.latency")}
    assert _find_cycle(inside) is None


def test_latency_modules_stay_short():
    long = {p.name: n for p in (ROOT / "latency").glob("*.py") if (n := len(p.read_text().splitlines())) > 520}
    assert not long, f"latency modules over ~500 lines: {long}"


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_first_in_a_fresh_interpreter():
    names = sorted(set(_modules()) - {"elana_magic.__main__"})  # __main__ runs the shell command
    # one interpreter; before each module, every elana_magic module is forgotten, so each one is
    # imported first (third-party libraries stay loaded: it is our modules' order that matters)
    code = (
        "import importlib, sys, traceback\n"
        f"names = {names!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for key in [k for k in sys.modules if k == 'elana_magic' or k.startswith('elana_magic.')]:\n"
        "        del sys.modules[key]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                            cwd=str(ROOT.parent))
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_core_reads_a_saved_kind_only_once_its_module_registered_it():
    """In a fresh interpreter core alone knows no kind (it imports none); elana_magic.load_report registers
    every kind, the size-fit answer included, before reading."""
    import subprocess
    import sys

    code = ("import json, tempfile\n"
            "from elana_magic.core.envelope import REPORT_KINDS\n"
            "assert not REPORT_KINDS, REPORT_KINDS\n"
            "import elana_magic.reports\n"
            "print(sorted(REPORT_KINDS))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == str(sorted(["comparison", "energy", "latency", "latency-grid", "profile", "projection",
                                                                "size", "size-fit"]))


def test_one_name_each_and_no_dead_code():
    """Issue 22: the device peak table and the measured activation peaks, the model's fingerprint and the
    activation peaks' key, each have a name of their own; the dead helpers stay gone."""
    import importlib

    gone = {"elana_magic.latency.memory": ("PEAKS", "model_fingerprint"), "elana_magic.latency.roofline": ("PEAKS",),
            "elana_magic.cli": ("_has_replicas",), "elana_magic.core.units": ("bytes_in",),
            "elana_magic.core.display": ("display_report",)}
    for name, attrs in gone.items():
        module = importlib.import_module(name)
        assert not [a for a in attrs if hasattr(module, a)], name
    from elana_magic.latency.memory import ACTIVATION_PEAKS, peaks_key  # noqa: F401
    from elana_magic.latency.roofline import DEVICE_PEAKS  # noqa: F401
