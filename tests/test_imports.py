"""The import graph of the edgewise package, read from the source with `ast`.

Imports inside functions run later, when everything they name is loaded, so only the module-level
graph must be free of circles; the runtime's rule and the private-name rule hold at every level.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edgewise

PACKAGE = Path(edgewise.__file__).parent
HEAVY = ("torch", "transformers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


class _Imports(ast.NodeVisitor):
    """(imported module, imported names, line) of every import, or only of those run at import time."""

    def __init__(self, module: str, is_package: bool, module_level_only: bool):
        self.package = module if is_package else module.rpartition(".")[0]
        self.module_level_only = module_level_only
        self.found: list[tuple[str, tuple[str, ...], int]] = []

    def _skip(self, node) -> None:
        if not self.module_level_only:
            self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _skip

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            self._skip(node)  # never runs
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, (), node.lineno) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parent = self.package.split(".")
            parent = parent[: len(parent) - node.level + 1]
            base = ".".join(parent + ([base] if base else []))
        self.found.append((base, tuple(alias.name for alias in node.names), node.lineno))


def imports(module: str, module_level_only: bool) -> list[tuple[str, tuple[str, ...], int]]:
    path = MODULES[module]
    visitor = _Imports(module, path.name == "__init__.py", module_level_only)
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.found


def edgewise_targets(imported: str, names: tuple[str, ...]) -> set[str]:
    """The edgewise modules an import loads directly (``from edgewise.core import builtin`` loads both)."""
    targets = {imported} if imported in MODULES else set()
    targets |= {f"{imported}.{name}" for name in names if f"{imported}.{name}" in MODULES}
    return targets


def module_graph(module_level_only: bool = True) -> dict[str, set[str]]:
    return {module: {t for imported, names, _ in imports(module, module_level_only)
                     for t in edgewise_targets(imported, names)} - {module} for module in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

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
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_circle_and_only_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_module_level_import_graph_has_no_circle():
    graph = module_graph()

    assert "edgewise.runtime.base" in graph["edgewise.runtime.predictor"]  # the graph is read at all
    assert "edgewise.runtime.pytorch" not in graph["edgewise.runtime.runners"]  # a lazy import is no edge
    assert cycles(graph) == []


def test_import_graph_has_no_circle_even_through_imports_inside_functions():
    # The circle issue 11 removed (runtime.predictor -> export.tensorrt -> export.onnx -> runtime.predictor)
    # ran through an import inside a function: lazy imports count too.
    graph = module_graph(module_level_only=False)

    assert "edgewise.runtime.pytorch" in graph["edgewise.runtime.runners"]
    assert cycles(graph) == []


def test_runtime_imports_only_core_and_runtime():
    wrong = [f"{module}:{line} imports {imported}"
             for module in MODULES if module.startswith("edgewise.runtime")
             for imported, _, line in imports(module, False)
             if imported.split(".")[0] == "edgewise" and not imported.startswith(("edgewise.core", "edgewise.runtime"))]

    assert wrong == []


def test_no_module_imports_a_private_name_of_another():
    private = [f"{module}:{line} imports {name} from {imported}"
               for module in MODULES
               for imported, names, line in imports(module, False)
               if imported.startswith("edgewise") and imported != module
               for name in names if name.startswith("_") and not name.endswith("__")]  # __version__ is public

    assert private == []


@pytest.mark.slow
def test_import_edgewise_runtime_loads_neither_torch_nor_transformers():
    runtime = [m for m in MODULES if m.startswith("edgewise.runtime")]
    code = (f"import importlib, sys\nfor m in {runtime!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["distill", "/no/such/teacher", "data.csv", "-o", "out"], ["export", "/no/such/model", "-o", "out"],
    ["prune", "/no/such/model", "data.csv", "-o", "out", "--flops", "0.5"],
    ["finetune", "/no/such/encoder", "data.csv", "-o", "out"], ["bench", "/no/such/model"],
    ["quantize", "/no/such/model", "-o", "out"], ["evaluate", "/no/such/model", "data.csv"],
])
def test_a_missing_model_folder_fails_before_torch_is_imported(command, tmp_path):
    probe = ("import sys; from click.testing import CliRunner; from edgewise.cli import cli; "
             f"r = CliRunner().invoke(cli, {command!r}); "
             "print(r.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules); print(r.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)

    assert done.stdout.splitlines()[0] == "2 False False", done.stdout + done.stderr
    assert "does not exist" in done.stdout
