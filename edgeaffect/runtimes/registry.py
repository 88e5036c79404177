"""Runtime registry: name -> implementing class, pip extra, artifact suffixes.

``available()`` probes packages with :func:`importlib.util.find_spec`, so asking
which runtimes exist never imports onnxruntime, openvino or tensorrt.  ``load``
picks the runtime from the file suffix; adding a backend is one entry here.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import EdgeAffectError, MissingDependencyError


@dataclass(frozen=True)
class RuntimeEntry:
    name: str
    target: str                       # "module:Class"
    extra: str                        # pip extra that installs the packages
    packages: tuple[str, ...]         # import names that must be present
    suffixes: tuple[str, ...]         # artifact suffixes it opens, in preference order
    description: str = ""
    # artifact of each precision inside a run (or pruned-<ratio>/) folder; a precision that shares the
    # fp32 file (bf16 on OpenVINO and torch) is an execution setting of that file, not a file of its own
    artifacts: Mapping[str, str] = field(default_factory=dict)

    def missing(self) -> list[str]:
        return [p for p in self.packages if _find_spec(p) is None]

    def load_class(self):
        missing = self.missing()
        if missing:
            raise MissingDependencyError(missing[0], self.extra, f"the {self.name} runtime")
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)


_RUNTIMES: dict[str, RuntimeEntry] = {}


def register_runtime(entry: RuntimeEntry) -> RuntimeEntry:
    _RUNTIMES[entry.name] = entry
    return entry


for _e in (
    RuntimeEntry("torch", "edgeaffect.runtimes.torch:TorchRuntime", "torch", ("torch",),
                 (".pt",), "PyTorch eager, the FP32 reference", {"fp32": "checkpoint.pt", "bf16": "checkpoint.pt"}),
    RuntimeEntry("onnxruntime", "edgeaffect.runtimes.onnxruntime:OnnxRuntime", "onnx", ("onnxruntime", "onnx"),
                 (".onnx",), "ONNX Runtime (CPU, CUDA, TensorRT execution providers)",
                 {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}),
    RuntimeEntry("openvino", "edgeaffect.runtimes.openvino:OpenVinoRuntime", "openvino", ("openvino",),
                 (".xml", ".onnx"), "OpenVINO (CPU/GPU/AUTO, IR or ONNX)",
                 {"fp32": "openvino/model.xml", "bf16": "openvino/model.xml", "fp16": "openvino/model.fp16.xml",
                  "int8": "openvino/model.int8.xml"}),
    RuntimeEntry("tensorrt", "edgeaffect.runtimes.tensorrt:TensorRTRuntime", "tensorrt", ("tensorrt", "pycuda"),
                 (".engine", ".plan"), "TensorRT engine on a CUDA device (pycuda buffers)"),
):
    register_runtime(_e)


def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def list_runtimes() -> list[str]:
    return list(_RUNTIMES)


def get_runtime(name: str) -> RuntimeEntry:
    if name not in _RUNTIMES:
        raise EdgeAffectError(f"unknown runtime {name!r}; known runtimes: {', '.join(_RUNTIMES)}")
    return _RUNTIMES[name]


def available() -> list[str]:
    """Runtimes whose packages are installed (probed without importing them)."""
    return [n for n, e in _RUNTIMES.items() if not e.missing()]


def runtime_for(path: str | os.PathLike) -> str:
    """The first installed runtime that opens ``path``'s suffix (or the first one that would)."""
    suffix = _suffix(path)
    candidates = [e for e in _RUNTIMES.values() if suffix in e.suffixes]
    if not candidates:
        known = sorted({s for e in _RUNTIMES.values() for s in e.suffixes})
        raise EdgeAffectError(f"no runtime opens {suffix or 'files without a suffix'} ({path}); known: {', '.join(known)}")
    for e in candidates:
        if not e.missing():
            return e.name
    return candidates[0].name  # load_class() then names the missing package and its extra


def load(path: str | os.PathLike, runtime: str | None = None, **options: Any):
    """Open ``path`` with ``runtime`` (default: chosen from the suffix); returns a loaded Runtime.

    A run directory opens its ``model.onnx`` (or, failing that, ``checkpoint.pt`` with torch).
    """
    path = Path(path)
    if path.is_dir():
        path = _artifact_in_run(path, runtime)
    name = runtime or runtime_for(path)
    entry = get_runtime(name)
    if _suffix(path) not in entry.suffixes:
        raise EdgeAffectError(f"the {name} runtime opens {', '.join(entry.suffixes)} files, not {path.name}")
    return entry.load_class()(path, **options)


def _artifact_in_run(run: Path, runtime: str | None) -> Path:
    entry = get_runtime(runtime) if runtime else None
    order = list(entry.suffixes) if entry else [".onnx", ".pt"]
    names = {".onnx": ["model.onnx"], ".xml": ["openvino/model.xml"], ".pt": ["checkpoint.pt"]}
    for suffix in order:
        for rel in names.get(suffix, []):
            if (run / rel).exists():
                return run / rel
        if suffix in (".engine", ".plan"):
            engines = sorted((run / "tensorrt").glob(f"*{suffix}"))
            if engines:
                return engines[0]
    raise EdgeAffectError(f"{run} holds no artifact for {runtime or 'any runtime'}; run `edgeaffect export {run}` first")


def _suffix(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()
