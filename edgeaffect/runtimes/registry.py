"""The runtime table: everything the package knows about a runtime, in one entry per runtime.

An entry names the class that runs it, the pip extra and packages it needs, the
artifact of each precision inside a run (and how a file's precision is read back),
the exporter that builds its artifact from the ONNX, its INT8 quantizer, the load
options bench times it with, and its rank for ``--runtime auto``.  Discovery,
export, bench, quantize, the demo and the CLI's choices all iterate over this
table, so a new runtime is an entry here plus its class (and exporter/quantizer).

``available()`` probes packages with :func:`importlib.util.find_spec`, so asking
which runtimes exist never imports onnxruntime, openvino or tensorrt.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import EdgeAffectError, MissingDependencyError


@dataclass(frozen=True)
class RuntimeEntry:
    name: str
    target: str                       # "module:Class" of its Runtime
    extra: str                        # pip extra that installs the packages
    packages: tuple[str, ...]         # import names that must be present
    suffixes: tuple[str, ...]         # artifact suffixes it opens, in preference order
    description: str = ""
    # artifact of each precision inside a run (or pruned-<ratio>/) folder; a precision that shares the
    # fp32 file (bf16 on OpenVINO and torch) is an execution setting of that file, not a file of its own
    artifacts: Mapping[str, str] = field(default_factory=dict)
    pattern: str = ""                 # artifacts named per machine (TensorRT engines): a glob in the run ...
    precision_of: str = ""            # ... and "module:function" reading a file's precision from its name
    file_format: str = ""             # what `export --format` calls its artifact (onnx, openvino, tensorrt)
    exporter: str = ""                # "module:function" (onnx_path, ExportTarget) -> artifact; "" = no exporter
    quantizer: str = ""               # "module:function" of its INT8 quantizer in the quantize pipeline
    quantizer_packages: tuple[tuple[str, str], ...] = ()   # (import name, extra) the quantizer needs besides
    quantized: str = ""               # what the quantizer publishes (default: the int8 artifact)
    rank: int = 99                    # --runtime auto prefers the lowest rank the run has
    takes_threads: bool = False       # bench/demo pass ``threads``
    compiles_batch: bool = False      # bench compiles each timed batch static (OpenVINO reshape)
    remote: bool = False              # opens a server URL, not a file: no artifacts, never exported or benched

    def missing(self) -> list[str]:
        return [p for p in self.packages if _find_spec(p) is None]

    def quantizer_missing(self) -> list[tuple[str, str]]:
        """(package, extra) the INT8 quantizer lacks on this machine."""
        need = [(p, self.extra) for p in self.packages] + list(self.quantizer_packages)
        return [(p, x) for p, x in dict.fromkeys(need) if _find_spec(p) is None]

    def load_class(self):
        missing = self.missing()
        if missing:
            raise MissingDependencyError(missing[0], self.extra, f"the {self.name} runtime")
        return _resolve(self.target)

    def shares(self, precision: str) -> bool:
        """True when ``precision`` runs from the fp32 file (an execution setting, no file of its own)."""
        rel = self.artifacts.get(precision)
        return precision != "fp32" and rel is not None and rel == self.artifacts.get("fp32")

    def find(self, root: Path) -> list[tuple[str, Path]]:
        """(precision, path) of every artifact of this runtime present under ``root``."""
        found = [(p, root / rel) for p, rel in self.artifacts.items() if (root / rel).is_file()]
        if self.pattern:
            read = _resolve(self.precision_of)
            found += [(read(f), f) for f in sorted(root.glob(self.pattern)) if f.is_file()]
        return found

    def parse(self, path: str | os.PathLike) -> str | None:
        """The precision a file's name says it holds, or None when the name is not one of ours."""
        path = Path(path)
        if self.pattern and path.suffix == Path(self.pattern).suffix:
            return _resolve(self.precision_of)(path)
        return next((p for p, rel in self.artifacts.items() if not self.shares(p) and Path(rel).name == path.name), None)

    def bench_options(self, precision: str, batch: int, threads: int | None) -> dict[str, Any]:
        """Load options of a timed variant: its precision, threads, and a static batch where compiled."""
        opts: dict[str, Any] = {"precision": precision}
        if threads and self.takes_threads:
            opts["threads"] = threads
        if self.compiles_batch:
            opts["batch"] = batch
        return opts

    def export(self, onnx_path: Path, target: Any) -> Path:
        """Build this runtime's artifact of ``target.precision`` from the ONNX (see ``export.ExportTarget``)."""
        if not self.exporter:
            raise EdgeAffectError(f"{self.name} has no exporter")
        return _resolve(self.exporter)(onnx_path, target)

    def quantize_fn(self) -> Callable:
        if not self.quantizer:
            raise EdgeAffectError(f"{self.name} has no INT8 quantizer")
        return _resolve(self.quantizer)


_RUNTIMES: dict[str, RuntimeEntry] = {}


def register_runtime(entry: RuntimeEntry) -> RuntimeEntry:
    _RUNTIMES[entry.name] = entry
    return entry


for _e in (
    RuntimeEntry("torch", "edgeaffect.runtimes.torch:TorchRuntime", "train", ("torch",),
                 (".pt",), "PyTorch eager, the FP32 reference", {"fp32": "checkpoint.pt", "bf16": "checkpoint.pt"},
                 rank=3, takes_threads=True),
    RuntimeEntry("onnxruntime", "edgeaffect.runtimes.onnxruntime:OnnxRuntime", "onnxruntime", ("onnxruntime",),
                 (".onnx",), "ONNX Runtime (CPU, CUDA, TensorRT execution providers)",
                 {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"},
                 file_format="onnx", quantizer="edgeaffect.quantize.pipeline:quantize_onnxruntime",
                 quantizer_packages=(("onnx", "train"),),
                 rank=2, takes_threads=True),
    RuntimeEntry("openvino", "edgeaffect.runtimes.openvino:OpenVinoRuntime", "openvino", ("openvino",),
                 (".xml", ".onnx"), "OpenVINO (CPU/GPU/AUTO, IR or ONNX)",
                 {"fp32": "openvino/model.xml", "bf16": "openvino/model.xml", "fp16": "openvino/model.fp16.xml",
                  "int8": "openvino/model.int8.xml"},
                 file_format="openvino", exporter="edgeaffect.export:openvino_artifact",
                 quantizer="edgeaffect.quantize.pipeline:quantize_openvino",
                 quantizer_packages=(("nncf", "openvino"),), rank=1, takes_threads=True, compiles_batch=True),
    RuntimeEntry("tensorrt", "edgeaffect.runtimes.tensorrt:TensorRTRuntime", "tensorrt", ("tensorrt", "pycuda"),
                 (".engine", ".plan"), "TensorRT engine on a CUDA device (pycuda buffers)",
                 pattern="tensorrt/*.engine", precision_of="edgeaffect.runtimes.tensorrt:engine_precision",
                 file_format="tensorrt", exporter="edgeaffect.export:tensorrt_artifact",
                 quantizer="edgeaffect.quantize.pipeline:quantize_tensorrt",
                 quantizer_packages=(("onnxruntime", "onnxruntime"), ("onnx", "train")), quantized="tensorrt/model.int8.qdq.onnx",
                 rank=0),
    RuntimeEntry("triton", "edgeaffect.runtimes.triton:TritonRuntime", "serve", (), (),
                 "a model served by Triton Inference Server (`edgeaffect serve`), over HTTP", remote=True),
):
    register_runtime(_e)


def _resolve(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def list_runtimes(remote: bool = False) -> list[str]:
    """Runtimes that run an artifact file (``remote=True``: also those that talk to a server)."""
    return [n for n, e in _RUNTIMES.items() if remote or not e.remote]


def get_runtime(name: str) -> RuntimeEntry:
    if name not in _RUNTIMES:
        raise EdgeAffectError(f"unknown runtime {name!r}; known runtimes: {', '.join(_RUNTIMES)}")
    return _RUNTIMES[name]


def available() -> list[str]:
    """Artifact runtimes whose packages are installed (probed without importing them)."""
    return [n for n, e in _RUNTIMES.items() if not e.missing() and not e.remote]


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
    if isinstance(path, str) and "://" in path:  # a server URL: the remote runtime (triton) opens it
        name = runtime or next(n for n, e in _RUNTIMES.items() if e.remote)
        if not get_runtime(name).remote:
            raise EdgeAffectError(f"the {name} runtime opens files, not the server URL {path}")
        return get_runtime(name).load_class()(path, **options)
    path = Path(path)
    if path.is_dir():
        path = _artifact_in_run(path, runtime)
    name = runtime or runtime_for(path)
    entry = get_runtime(name)
    if _suffix(path) not in entry.suffixes:
        raise EdgeAffectError(f"the {name} runtime opens {', '.join(entry.suffixes)} files, not {path.name}")
    return entry.load_class()(path, **options)


def _artifact_in_run(run: Path, runtime: str | None) -> Path:
    """The fp32 artifact of ``runtime`` in a run (default: ONNX, then the checkpoint)."""
    names = [runtime] if runtime else ["onnxruntime", "torch"]
    for name in names:
        found = [path for precision, path in get_runtime(name).find(run) if precision == "fp32"]
        if found:
            return found[0]
    raise EdgeAffectError(f"{run} holds no artifact for {runtime or 'any runtime'}; run `edgeaffect export {run}` first")


# -- artifacts of a run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    runtime: str
    precision: str
    path: Path
    variant: str = ""        # "" or "pruned-<ratio>"

    @property
    def label(self) -> str:
        v = f"{self.variant}/" if self.variant else ""
        return f"{v}{self.runtime}-{self.precision}"

    @property
    def entry(self) -> RuntimeEntry:
        return get_runtime(self.runtime)


def discover_artifacts(run_dir: str | os.PathLike, precisions: Iterable[str] = ()) -> list[Artifact]:
    """Every artifact of a run by its name in the runtime table, also under ``pruned-<ratio>/``.

    A precision that runs from another precision's file (bf16 from the fp32 IR or checkpoint) is listed
    only when it is asked for in ``precisions``: it is a way to execute that file, not a file of its own.
    """
    run_dir = Path(run_dir)
    asked = set(precisions)
    roots = [("", run_dir)] + [(p.name, p) for p in sorted(run_dir.glob("pruned-*")) if p.is_dir()]
    return [Artifact(entry.name, precision, path, variant)
            for variant, root in roots for entry in _RUNTIMES.values()
            for precision, path in entry.find(root) if not entry.shares(precision) or precision in asked]


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """An artifact and the files that travel with it: an IR's ``.bin``, a spec sidecar."""
    from .base import sidecar_path

    path = Path(path)
    companions = [path.with_suffix(".bin")] if path.suffix == ".xml" else []
    return [path, *(p for p in (*companions, sidecar_path(path)) if p.is_file())]


def by_rank(names: Iterable[str]) -> list[str]:
    """Runtime names in ``--runtime auto`` preference order (fastest first)."""
    return sorted(names, key=lambda n: get_runtime(n).rank)


def file_formats() -> list[str]:
    """What ``export --format`` names: each runtime's artifact format, in table order."""
    return [e.file_format for e in _RUNTIMES.values() if e.file_format]


def quantizable() -> list[str]:
    """Runtimes with an INT8 quantizer, in table order."""
    return [n for n, e in _RUNTIMES.items() if e.quantizer]


def _suffix(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()
