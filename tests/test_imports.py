"""The shape of the house: every module imports on its own, and no import runs in a circle."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "cleancut"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every cleancut module that ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:  # `from . import errors` names a module, not an attribute
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in MODULES else base)
    return {t for t in targets if t in MODULES and t != name}


def test_the_import_graph_has_no_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
    assert set(order) == set(MODULES)
    # and the arrows point down the house: the model store knows nothing of the engine
    for name in MODULES:
        if name.startswith("cleancut.models"):
            assert not {t for t in graph[name] if t.startswith("cleancut.engine")}, name
        if name.startswith(("cleancut.engine", "cleancut.models")):
            assert not {t for t in graph[name]
                        if t.startswith(("cleancut.server", "cleancut.cli"))}, name


def test_the_graph_sees_relative_and_function_local_imports() -> None:
    app = _imports("cleancut.server.app", MODULES["cleancut.server.app"])
    assert {"cleancut.server.native", "cleancut.server.state", "cleancut"} <= app
    root = _imports("cleancut", MODULES["cleancut"])
    assert "cleancut.engine" in root  # imported inside remove(), on first use


def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    def load(name: str) -> tuple[str, int, str]:
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                              text=True, timeout=120, check=False)
        return name, proc.returncode, proc.stderr[-2000:]

    with ThreadPoolExecutor(4) as pool:
        failed = [(n, err) for n, rc, err in pool.map(load, MODULES) if rc != 0]
    assert not failed, failed
