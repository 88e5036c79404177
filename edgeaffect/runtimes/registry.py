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

import fnmatch
import importlib
import importlib.util
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import EdgeAffectError, MissingDependencyError
from ..fileio import read_json
from ..precision import VERSIONED, check_precisions


@dataclass(frozen=True)
class ExportTarget:
    """What a runtime's exporter builds: the precision, where (``root``), the batch profile and the spec."""

    root: Path
    precision: str
    static_batch: int | None
    opt_batch: int
    max_batch: int
    spec: Any


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
    precision_of: Any = ""            # ... and the function (or "module:function") reading a file's precision from its name
    file_format: str = ""             # its artifact format (onnx, openvino, tensorrt): `export --runtime` takes it as an alias
    exporter: Any = ""                # (onnx_path, ExportTarget) -> artifact, or its "module:function"; "" = none
    quantizer: Any = ""               # its INT8 path (see ``quantize.pipeline``), or its "module:function"
    quantizer_packages: tuple[tuple[str, str], ...] = ()   # (import name, extra) the quantizer needs besides
    quantized: str = ""               # what the quantizer publishes (default: the int8 artifact)
    rank: int = 99                    # --runtime auto prefers the lowest rank the run has
    takes_threads: bool = False       # bench/demo pass ``threads``
    compiles_batch: bool = False      # bench compiles each timed batch static (OpenVINO reshape)
    remote: bool = False              # opens a server URL, not a file: no artifacts, never exported or benched
    title: str = ""                   # how messages name it (default: ``name``)
    order: int = 50                   # place in the table (listings, `export` order, help texts)
    precisions: tuple[str, ...] = ("fp32",)   # what it executes at all (then ``check`` asks this machine)
    check: Any = None                 # (precision, device) -> why this machine cannot run it, or None
    deployable: bool = False          # `edgeaffect pack --runtime` makes a torch-free bundle for it
    serves: bool = False              # runs a model inside `edgeaffect serve` (Triton's Python backend)
    reference: bool = False           # the FP32 reference every other row is compared with (torch eager)
    # built on the device, not carried: the file that builds each precision there (TensorRT: the ONNX, the
    # QDQ ONNX) and the "module:function" (bundle, precision, implicit, max_batch, spec) -> engine that does
    device_sources: Mapping[str, str] = field(default_factory=dict)
    device_builder: Any = ""
    ranker: Any = ""                  # "module:function" ranking an INT8 artifact's tensors (guard report)
    int8_preset: Mapping[str, Any] = field(default_factory=dict)   # QuantConfig settings its INT8 path starts from
    device_report: Any = ""           # "module:" with report() -> dict and lines(report) -> [str]: what `env` says
    inspect: Any = ""                 # (path) -> the precision a file holds, read from its contents (names failing)

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
        return resolve(self.target)

    def shares(self, precision: str) -> bool:
        """True when ``precision`` runs from the fp32 file (an execution setting, no file of its own)."""
        rel = self.artifacts.get(precision)
        return precision != "fp32" and rel is not None and rel == self.artifacts.get("fp32")

    def find(self, root: Path) -> list[tuple[str, Path]]:
        """(precision, path) of every artifact of this runtime present under ``root``."""
        found = [(p, root / rel) for p, rel in self.artifacts.items() if (root / rel).is_file()]
        if self.pattern:
            read = resolve(self.precision_of)
            found += [(read(f), f) for f in sorted(root.glob(self.pattern)) if f.is_file()]
        return found

    def parse(self, path: str | os.PathLike) -> str | None:
        """The precision a file's name says it holds, or None when the name is not one of ours."""
        path = Path(path)
        if self.pattern and path.suffix == Path(self.pattern).suffix:
            return resolve(self.precision_of)(path)
        return next((p for p, rel in self.artifacts.items() if not self.shares(p) and Path(rel).name == path.name), None)

    def read_precision(self, path: Path) -> str | None:
        """The precision ``path`` holds: from its name, else from its contents where the runtime can read them."""
        return self.parse(path) or (resolve(self.inspect)(path) if self.inspect else None)

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
        return resolve(self.exporter)(onnx_path, target)

    def unsupported(self, precision: str, device: str | None = None) -> str | None:
        """Why this runtime cannot run ``precision`` on this machine, in one line; None when it can."""
        if precision not in self.precisions:
            return f"{self.name} has no {precision} execution"
        return resolve(self.check)(precision, device) if self.check else None

    def sources(self) -> dict[str, str]:
        """What a deploy bundle carries per precision: the artifact, or what builds it on the device."""
        if not self.device_sources:
            return dict(self.artifacts)
        return {**self.device_sources, **({"int8": self.quantized} if self.quantized else {})}

    def rank_fn(self) -> Callable:
        """(work dir, INT8 artifact, FP32 ONNX, feeds) -> its tensors ranked by harm (the guard's table)."""
        if not self.ranker:
            raise EdgeAffectError(f"{self.name} has no INT8 sensitivity ranking")
        return resolve(self.ranker)

    def quantize_fn(self) -> Callable:
        if not self.quantizer:
            raise EdgeAffectError(f"{self.name} has no INT8 quantizer")
        return resolve(self.quantizer)


_RUNTIMES: dict[str, RuntimeEntry] = {}


def register_runtime(entry: RuntimeEntry) -> RuntimeEntry:
    """Add ``entry`` to the table (each runtime package registers its own at import), kept in ``order``."""
    _RUNTIMES[entry.name] = entry
    VERSIONED.update((*entry.packages, *(p for p, _ in entry.quantizer_packages)))
    ordered = sorted(_RUNTIMES.values(), key=lambda e: e.order)
    _RUNTIMES.clear()
    _RUNTIMES.update((e.name, e) for e in ordered)
    return entry


def _discover() -> None:
    """Import every runtime package beside this module: each one registers its entry.  The table names
    no module: a runtime is there because its package is."""
    for found in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if found.ispkg:
            importlib.import_module(f"{__package__}.{found.name}")


def resolve(target: str | Callable):
    """A ``"module:name"`` string's object (a runtime's own package may give the object itself)."""
    if not isinstance(target, str):
        return target
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def probe_import(package: str) -> tuple[str | None, str | None]:
    """(version, None) when ``package`` really imports (installed is not usable: a JetPack module outside the
    venv, a pycuda built against another CUDA), else (None, why in one line)."""
    try:
        mod = importlib.import_module(package)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here", said in one line
        return None, first_line(exc)
    return str(getattr(mod, "__version__", getattr(mod, "VERSION", "?"))), None


def devices() -> list[tuple[dict[str, Any], Callable[[dict[str, Any]], list[str]]]]:
    """(report, its lines) of every runtime that describes this device (``edgeaffect env``)."""
    out = []
    for e in _RUNTIMES.values():
        if e.device_report:
            module = importlib.import_module(e.device_report)
            out.append((module.report(), module.lines))
    return out


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
    """The fp32 artifact of ``runtime`` in a run (default: the ONNX, then the reference's checkpoint)."""
    for name in [runtime] if runtime else [onnx_runtime(), reference()]:
        try:
            return pick_artifact(run, name, ["fp32"]).path
        except EdgeAffectError:
            continue
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


# -- picking one ---------------------------------------------------------------------------------------
def _decisions(run_dir: Path) -> tuple[dict, dict]:
    """The manifest's guard decisions: (export's reduced floats by label, INT8 by runtime)."""
    path = run_dir / "manifest.json"
    try:
        manifest = read_json(path) if path.is_file() else {}
    except EdgeAffectError:
        return {}, {}
    manifest = manifest if isinstance(manifest, dict) else {}
    floats, int8 = manifest.get("precisions"), manifest.get("quantize")
    return (floats if isinstance(floats, dict) else {}), (int8 if isinstance(int8, dict) else {})


def refusals(run_dir: str | os.PathLike) -> dict[str, str]:
    """Labels (``openvino-bf16``) the export's accuracy guard refused in a run or bundle, with its reason."""
    return {label: d.get("reason", "") for label, d in _decisions(Path(run_dir))[0].items()
            if isinstance(d, dict) and d.get("accepted") is False}


def guard_accepted(run_dir: str | os.PathLike) -> set[str]:
    """Labels an accuracy guard accepted: reduced floats at export, INT8 artifacts the quantize guard passed."""
    floats, int8 = _decisions(Path(run_dir))
    return ({label for label, d in floats.items() if isinstance(d, dict) and d.get("accepted")}
            | {f"{rt}-int8" for rt, r in int8.items() if isinstance(r, dict) and r.get("passed") and r.get("artifact")})


def blocked(artifact: "Artifact", refused: Mapping[str, str] | None = None) -> str | None:
    """Why ``artifact`` must not run: this machine cannot run its precision, or the guard refused it."""
    reason = unsupported(artifact.runtime, artifact.precision)
    if reason is None and refused and artifact.label in refused:
        reason = f"refused by the accuracy guard at export: {refused[artifact.label]}"
    return reason


def eligible_artifacts(run_dir: str | os.PathLike, runtime: str = "auto", precisions: Iterable[str] = ("fp32",), *,
                       avoid: Iterable[tuple[str, str]] = (), accepted_only: bool = False) -> list[Artifact]:
    """Every artifact of a run that may run here, in preference order: by ``precisions`` (first first), then by
    runtime (``auto``: the installed ones, best-ranked first); one this machine cannot run, one the accuracy
    guard refused or a pair in ``avoid`` is left out.  ``accepted_only``: a reduced precision only where a guard
    accepted it (``--precision auto``), not merely where none refused it."""
    return _eligible(Path(run_dir), runtime, list(precisions), set(avoid), accepted_only)[0]


def _eligible(run_dir: Path, runtime: str, precisions: list[str], avoid: set, accepted_only: bool
              ) -> tuple[list[Artifact], dict[str, str]]:
    """(eligible artifacts in preference order, why each precision's first blocked artifact may not run)."""
    refused = refusals(run_dir)
    if accepted_only:
        accepted = guard_accepted(run_dir)
        avoid |= {(a.runtime, a.precision) for a in discover_artifacts(run_dir, precisions)
                  if a.precision != "fp32" and a.label not in accepted}
    found = [a for a in discover_artifacts(run_dir, precisions) if not a.variant]
    order = by_rank(available()) if runtime == "auto" else [runtime]
    eligible, reasons = [], {}
    for precision in precisions:
        for name in order:
            for a in (a for a in found if a.runtime == name and a.precision == precision):
                why = blocked(a, refused)
                if why is None and (name, precision) not in avoid:
                    eligible.append(a)
                else:
                    reasons.setdefault(precision, why or "")
    return eligible, reasons


def pick_artifact(run_dir: str | os.PathLike, runtime: str = "auto", precisions: Iterable[str] = ("fp32",), *,
                  avoid: Iterable[tuple[str, str]] = (), accepted_only: bool = False) -> Artifact:
    """THE choice of a run's artifact by rank: the first of :func:`eligible_artifacts`.  Else one line saying
    why: the asked runtime's reason, or what the run has."""
    run_dir, precisions = Path(run_dir), list(precisions)
    eligible, reasons = _eligible(run_dir, runtime, precisions, set(avoid), accepted_only)
    if eligible:
        return eligible[0]
    if runtime != "auto" and any(reasons.values()):
        precision, why = next((p, w) for p, w in reasons.items() if w)
        raise EdgeAffectError(f"{runtime} {precision}: {why}")
    have = ", ".join(sorted(f"{a.runtime}-{a.precision}" for a in discover_artifacts(run_dir) if not a.variant)) or "none"
    want = "/".join(precisions)
    hint = "run `edgeaffect export` on it" + (" with INT8 quantization" if "int8" in precisions else "")
    raise EdgeAffectError(f"{run_dir} has no {want} artifact for the {runtime} runtime (it has: {have}); {hint}")


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """An artifact and the files that travel with it: an IR's ``.bin``, a spec sidecar."""
    from .base import sidecar_path

    path = Path(path)
    companions = [path.with_suffix(".bin")] if path.suffix == ".xml" else []
    return [path, *(p for p in (*companions, sidecar_path(path)) if p.is_file())]


def by_rank(names: Iterable[str]) -> list[str]:
    """Runtime names in ``--runtime auto`` preference order (fastest first)."""
    return sorted(names, key=lambda n: get_runtime(n).rank)


def quantizable() -> list[str]:
    """Runtimes with an INT8 quantizer, in table order."""
    return [n for n, e in _RUNTIMES.items() if e.quantizer]


def _suffix(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()


def unsupported(runtime: str, precision: str, *, device: str | None = None) -> str | None:
    """Why ``runtime`` cannot run ``precision`` on this machine, in one line; None when it can."""
    check_precisions([precision])
    return get_runtime(runtime).unsupported(precision, device)


def runtime_precisions() -> dict[str, tuple[str, ...]]:
    """Each artifact runtime and the precisions it executes at all."""
    return {n: e.precisions for n, e in _RUNTIMES.items() if not e.remote}


def deployable() -> list[str]:
    """Runtimes `edgeaffect pack` makes a bundle for."""
    return [n for n, e in _RUNTIMES.items() if e.deployable]


def serving() -> list[str]:
    """Runtimes that run a model inside `edgeaffect serve`."""
    return [n for n, e in _RUNTIMES.items() if e.serves]


def built_on_device(rel: str) -> bool:
    """Whether a run-relative file is an artifact built on the device it runs on (a TensorRT engine)."""
    return any(e.device_sources and e.pattern and fnmatch.fnmatch(rel, e.pattern) for e in _RUNTIMES.values())


def onnx_runtime() -> str:
    """The runtime that runs ``model.onnx``, the file every other artifact is built from."""
    return next(n for n, e in _RUNTIMES.items() if e.file_format == "onnx")


def reference() -> str:
    """The runtime of the FP32 reference row (torch eager)."""
    return next(n for n, e in _RUNTIMES.items() if e.reference)


_discover()
