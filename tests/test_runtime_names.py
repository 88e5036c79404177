"""Knowing a runtime is its package's business: at most 4 product files outside ``edgeaffect/runtimes/`` name one.

How a file is counted (``names_a_runtime``), read from its syntax tree:

- an import of a runtime's package (``edgeaffect.runtimes.<name>`` or below, relative imports too), or of
  a third-party module a runtime runs on (an entry's ``packages``: onnxruntime, openvino, tensorrt, pycuda);
- a string literal equal to a runtime's name (``"openvino"``), except in docstrings and ``help=`` texts,
  which describe rather than decide.

The reference runtime's name (``"torch"``) is counted through imports of its package only: it is also the
name of the PyTorch library that training, the models, errors and provenance name as a library, and the
reference row is reached through ``registry.reference()``.  ``import torch`` is the training framework's.
"""
from __future__ import annotations

import ast
from pathlib import Path

from edgeaffect.runtimes.registry import _RUNTIMES

PACKAGE = Path(__file__).resolve().parent.parent / "edgeaffect"
ALLOWED = 4


def _skipped(tree: ast.AST) -> set[int]:
    """ids of the nodes inside docstrings and ``help=`` keyword values."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
        elif isinstance(node, ast.keyword) and node.arg == "help":
            out.update(id(n) for n in ast.walk(node.value))
    return out


def _runtime_module(module: str, names: set[str]) -> bool:
    parts = module.split(".")
    return "runtimes" in parts and parts.index("runtimes") + 1 < len(parts) and parts[parts.index("runtimes") + 1] in names


def names_a_runtime(source: str) -> list[str]:
    """What in ``source`` names a specific runtime (empty: nothing)."""
    names = set(_RUNTIMES)
    literal = {n for n, e in _RUNTIMES.items() if not e.reference}
    libraries = {p for e in _RUNTIMES.values() if not e.reference for p in e.packages}
    tree = ast.parse(source)
    skip = _skipped(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in literal and id(node) not in skip:
            hits.append(f"line {node.lineno}: {node.value!r}")
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            candidates = [module, *(f"{module}.{a.name}" for a in node.names)]
            if any(_runtime_module(c, names) for c in candidates) or (not node.level and module.split(".")[0] in libraries):
                hits.append(f"line {node.lineno}: from {module} import")
        elif isinstance(node, ast.Import):
            hits += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in libraries]
    return hits


def product_files_naming_a_runtime() -> dict[str, list[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel.startswith("edgeaffect/runtimes/"):
            continue
        hits = names_a_runtime(path.read_text(encoding="utf-8"))
        if hits:
            found[rel] = hits
    return found


def test_at_most_four_product_files_outside_the_runtime_packages_name_a_runtime():
    found = product_files_naming_a_runtime()
    assert len(found) <= ALLOWED, "\n".join(f"{f}: {', '.join(h)}" for f, h in found.items())


def test_the_count_sees_each_way_of_naming_a_runtime():
    assert names_a_runtime('if rt == "openvino":\n    pass\n')
    assert names_a_runtime("from ..runtimes.tensorrt import engine_filename\n")
    assert names_a_runtime("from ..runtimes import triton\n")
    assert names_a_runtime("import onnxruntime as ort\n")
    assert names_a_runtime("from ..runtimes.torch import TorchRuntime\n")
    assert not names_a_runtime('"""Runs on openvino."""\nx = typer.Option("--r", help="openvino or onnxruntime")\n')
    assert not names_a_runtime('import torch\nversions = {"torch": torch.__version__}\n')
    assert not names_a_runtime("from ..runtimes.registry import reference\n")
