"""The package's import structure: every module imports on its own, the import graph has no
cycle, and only the CLI imports the terminal UI libraries (docs/architecture.md, "Imports").

Every ``import`` statement counts, including the lazy ones inside functions: a lazy import
only postpones a cycle to the first call, it does not remove it. ``from PKG import name`` is an
edge to ``PKG.name`` when that is a module and to ``PKG`` otherwise; the implicit import of a
module's parent packages is not an edge (every submodule has it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "edgenas"
UI_LIBS = {"typer", "rich", "click"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module ``name`` imports (absolute names, third-party included) with its line."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here[: len(here) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub if sub in MODULES else base, node.lineno))
    return out


def import_graph() -> dict[str, set[str]]:
    return {m: {dep for dep, _ in _imports(m, p) if dep in MODULES and dep != m} for m, p in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_only_the_cli_imports_typer_or_rich():
    bad = [f"{p.relative_to(PKG.parent)}:{line} imports {dep}" for m, p in MODULES.items() if not m.startswith("edgenas.cli")
           for dep, line in _imports(m, p) if dep.split(".")[0] in UI_LIBS]
    assert not bad, bad


# Each module in a fresh child of one interpreter that has the third-party libraries loaded
# already (fork is milliseconds; importing torch and tvm per module would take minutes): what is
# checked is edgenas's own import order, which third-party modules in sys.modules do not change.
_STANDALONE = r"""
import os, sys, traceback
import numpy, torch, tvm, onnx, onnxruntime, brevitas, typer, rich, filelock, matplotlib  # noqa: F401
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name)
print("FAILED " + " ".join(failed) if failed else "OK")
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_every_module_imports_on_its_own():
    proc = subprocess.run([sys.executable, "-c", _STANDALONE, *MODULES], capture_output=True, text=True, timeout=600,
                          cwd=PKG.parent)
    assert proc.stdout.strip().endswith("OK"), proc.stdout[-2000:] + proc.stderr[-4000:]
