"""The package's layers: every import of an ``anomalib_maa`` module points to its own layer or one to its left.

Layers, left to right (``docs/architecture.md``)::

    base (errors, console, distributed, io, weights, utils) < data < metrics
      < post_processing, callbacks < models < deploy < benchmark, demo < cli

The data *flows* datamodule -> model -> post-processor -> deploy -> benchmark; the *imports* put the
post-processor and the callbacks left of the model because ``Maa`` composes them, as anomalib's own models
import ``anomalib.post_processing``. Imports inside functions count like any other (a lazy import does not make
an arrow run the other way), and no group of modules imports itself round in a circle.

Run as a script to print the package's import graph by layer: ``python tests/test_layering.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "anomalib_maa"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "console", "distributed", "io", "weights", "utils"),
    ("data",),
    ("metrics",),
    ("post_processing", "callbacks"),
    ("models",),
    ("deploy",),
    ("benchmark", "demo"),
    ("cli",),
)
"""Top-level modules and subpackages of each layer, left (imported by all) to right (imports all)."""

FACE_LAYER = LAYERS.index(("models",))
"""``import anomalib_maa`` / ``from anomalib_maa import Maa`` loads the package's face, which imports the model."""


def layer_of(module: str) -> int:
    """Layer index of a dotted module name of the package (the face counts as the model's layer)."""
    parts = module.split(".")
    if parts == [PACKAGE]:
        return FACE_LAYER
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    msg = f"{module} is in no layer of tests/test_layering.py: add it to LAYERS"
    raise AssertionError(msg)


def module_name(path: Path, root: Path) -> str:
    """Dotted name of a source file below ``root`` (the package folder)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every import of a package module in one file.

    ``from anomalib_maa.x import y`` counts as importing ``anomalib_maa.x.y`` when that is a module, else
    ``anomalib_maa.x``; relative imports are resolved.
    """
    package = root.name
    name = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                for alias in child.names:
                    candidate = f"{target}.{alias.name}"
                    found.append((candidate if _exists(candidate, root) else target, child.lineno, nested))
            visit(child, inner)

    visit(tree, nested=False)
    return [(module, line, nested) for module, line, nested in found if module.split(".")[0] == package]


def _exists(module: str, root: Path) -> bool:
    relative = Path(*module.split(".")[1:])
    return (root / relative).with_suffix(".py").is_file() or (root / relative / "__init__.py").is_file()


def import_graph(root: Path) -> dict[str, list[tuple[str, int, bool]]]:
    """Every module of the package with the package modules it imports."""
    return {module_name(path, root): imports_of(path, root) for path in sorted(root.rglob("*.py"))}


def layer_violations(graph: dict[str, list[tuple[str, int, bool]]], layer=layer_of) -> list[str]:
    """Imports that point to a layer right of the importing module's, lazy ones marked as such."""
    problems = []
    for source, targets in graph.items():
        if source.count(".") == 0:
            continue  # the package's face re-exports the public API of every layer
        for target, line, nested in sorted(set(targets)):
            if layer(target) > layer(source):
                how = "a function-level import" if nested else "an import"
                problems.append(f"{source}:{line}: {how} of {target} (layer {layer(target)} > {layer(source)})")
    return problems


def import_cycles(graph: dict[str, list[tuple[str, int, bool]]]) -> list[list[str]]:
    """Circles of modules that import each other, lazy imports included (one circle per strongly connected set)."""
    edges = {
        source: sorted({target for target, _, _ in targets if target in graph}) for source, targets in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges[node]:
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges[node]:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            connect(node)
    return cycles


def test_every_module_is_in_a_layer():
    graph = import_graph(ROOT)
    for module in graph:
        layer_of(module)


def test_imports_point_left_only():
    assert layer_violations(import_graph(ROOT)) == []


def test_no_import_cycles():
    assert import_cycles(import_graph(ROOT)) == []


def test_checker_finds_a_lazy_import_to_the_right_and_a_cycle(tmp_path):
    """The checks above would fail on a wrong tree (so their passing means something)."""
    root = tmp_path / PACKAGE
    (root / "data").mkdir(parents=True)
    (root / "deploy").mkdir()
    (root / "__init__.py").write_text("")
    (root / "data" / "__init__.py").write_text("")
    (root / "deploy" / "__init__.py").write_text("")
    (root / "io.py").write_text("from anomalib_maa.data.checks import load\n")
    (root / "data" / "checks.py").write_text(
        "def load():\n    from anomalib_maa.io import decode\n    from ..deploy import export\n"
    )
    graph = import_graph(root)
    violations = layer_violations(graph)
    assert any(v.startswith("anomalib_maa.io:1: an import of anomalib_maa.data.checks") for v in violations)
    assert any("function-level import of anomalib_maa.deploy" in v for v in violations)
    assert import_cycles(graph) == [["anomalib_maa.data.checks", "anomalib_maa.io"]]


def main() -> None:
    """Print the import graph by layer, then the violations and circles (empty when the layering holds)."""
    graph = import_graph(ROOT)
    lines = []
    for index, names in enumerate(LAYERS):
        lines.append(f"layer {index}: {', '.join(names)}")
        for module in sorted(m for m in graph if m != PACKAGE and layer_of(m) == index):
            targets = sorted({t for t, _, _ in graph[module] if t != module})
            lines.append(f"  {module}" + (f" -> {', '.join(targets)}" if targets else ""))
    violations, cycles = layer_violations(graph), import_cycles(graph)
    lines.append(f"imports against the layers: {len(violations)}")
    lines.extend(f"  {v}" for v in violations)
    lines.append(f"import cycles: {len(cycles)}")
    lines.extend(f"  {' <-> '.join(c)}" for c in cycles)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
