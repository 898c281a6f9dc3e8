"""No import cycle in the package: the module-level import graph is acyclic, and every module imports
on its own, first, in a fresh interpreter (so no module works only because another was imported before)."""

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
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in known:
                        out.add(sub)
                    elif target in known:
                        out.add(target)
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


def test_cycle_finder_finds_a_cycle():
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
