"""The package's import graph (in-function imports included) has no cycle that spans two areas.

An area is a top-level module or subpackage of ``edgeaffect`` (``runs``, ``export``, ``quantize``,
``train``, ``tasks``, ``runtimes``, ...).  A cycle across areas means neither can be understood,
tested or installed without the other (the reason ``export`` once needed the training code).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgeaffect"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules ``module`` imports anywhere in its body (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in modules else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "edgeaffect (package root)"


def area_graph() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """area -> area it imports -> the (importer, imported) module pairs behind that edge."""
    modules = _modules()
    graph: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for module, path in modules.items():
        for target in _imported(module, path, modules):
            a, b = _area(module), _area(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, []).append((module, target))
    return graph


def cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one area (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_spans_two_areas():
    graph = area_graph()
    found = cycles(graph)
    detail = [f"{a} -> {b}: {graph[a][b][0][0]} imports {graph[a][b][0][1]}"
              for group in found for a in group for b in group if b in graph.get(a, {})]
    assert not found, "import cycles across areas:\n" + "\n".join(detail)


def test_the_checker_sees_a_cycle_through_an_in_function_import():
    graph = {"runs": {"quantize": [("edgeaffect.runs", "edgeaffect.quantize.prune")]},
             "quantize": {"runs": [("edgeaffect.quantize.prune", "edgeaffect.runs")]}, "tasks": {}}
    assert cycles(graph) == [["quantize", "runs"]]
    modules = _modules()
    assert "edgeaffect.runs" in _imported("edgeaffect.runtimes.torch", modules["edgeaffect.runtimes.torch"], modules)


# Packages an edge box has after `pip install edgeaffect` plus one runtime extra: everything else (torch, onnx,
# NNCF, PyAV, signing, plotting) belongs to an extra and must load lazily on the deploy path.
EXTRAS_ONLY = ("torch", "onnx", "onnxscript", "nncf", "av", "cryptography", "model_signing", "OpenSSL",
               "matplotlib", "scipy", "librosa", "sklearn", "torch_pruning", "h5py", "tensorrt", "pycuda")
DEPLOY_MODULES = ("edgeaffect.cli", "edgeaffect.pack", "edgeaffect.signing", "edgeaffect.bench", "edgeaffect.evaluate",
                  "edgeaffect.predict", "edgeaffect.demo.session", "edgeaffect.serve.server", "edgeaffect.report")


def test_the_deploy_path_imports_without_any_extra_package():
    """Each module the deploy install runs imports with every extra-only package blocked: a top-level import of
    one (say ``cryptography`` for signing) would break `check-bundle` on the device, not on a dev machine."""
    import subprocess
    import sys

    code = ("import sys, importlib\n"
            f"for m in {EXTRAS_ONLY!r}: sys.modules[m] = None\n"
            f"for m in {DEPLOY_MODULES!r}: importlib.import_module(m)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
