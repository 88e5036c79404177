"""Open a model for the demo through the runtime interface (``edgeaffect.load``): ``infer(dict) -> dict``.

A run directory is resolved to the artifact for the asked runtime and precision
by its conventional name (``checkpoint.pt``, ``model.onnx``, ``model.int8.onnx``,
``openvino/model[.int8].xml``, ``tensorrt/*.engine``); an exported file is
opened as it is.  ``runtime="auto"`` takes the fastest one the run has, and never
torch where a compiled runtime is installed: a run with only its checkpoint is
exported once on first use (:func:`ensure_compiled`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from .. import zoo
from ..errors import EdgeAffectError
from ..fileio import read_json
from ..precision import cpu_name
from ..runs import CHECKPOINT, read_manifest, read_spec, run_of
from ..spec import ModelSpec

log = logging.getLogger("edgeaffect.demo")

def runtime_choices() -> tuple[str, ...]:
    """``auto`` and every runtime in the runtime table."""
    from ..runtimes.registry import list_runtimes

    return ("auto", *list_runtimes())


def resolve_artifact(run: Path, runtime: str, precision: str) -> tuple[Path, str]:
    """(artifact path, runtime name) inside a run directory, for a precision this machine runs.

    A precision the export's accuracy guard refused (``precisions`` in the manifest) is refused here too.
    """
    from ..runtimes.registry import pick_artifact

    found = pick_artifact(run, runtime, [precision])
    return found.path, found.runtime


def choose_precision(run: Path, runtime: str) -> tuple[str, str]:
    """(runtime, precision) that ``--precision auto`` runs for a run folder: int8 on the best-ranked runtime here
    whose INT8 artifact the accuracy guard accepted and that bench, on this CPU, did not find slower than its
    fp32 at batch 1; else fp32 on ``runtime``."""
    from ..runtimes.registry import pick_artifact

    try:
        found = pick_artifact(run, runtime, ["int8"], avoid={(rt, "int8") for rt in _int8_slower_here(run)},
                              accepted_only=True)
    except EdgeAffectError:
        return runtime, "fp32"
    return found.runtime, "int8"


def _int8_slower_here(run: Path) -> set[str]:
    """Runtimes whose INT8 row in the run's bench.json, measured on this CPU, was slower than fp32 at batch 1."""
    try:
        data = read_json(run / "bench.json") if (run / "bench.json").is_file() else {}
    except EdgeAffectError:
        return set()
    if not isinstance(data, dict) or (data.get("machine") or {}).get("cpu") != cpu_name():
        return set()
    p50 = {(r.get("runtime"), r.get("precision")): r.get("p50_ms") for r in data.get("rows", [])
           if isinstance(r, dict) and r.get("batch") == 1 and isinstance(r.get("p50_ms"), (int, float))}
    return {rt for (rt, p), ms in p50.items() if p == "int8" and p50.get((rt, "fp32"), float("inf")) < ms}


def open_model(path: str | Path | None, runtime: str = "auto", precision: str = "auto", threads: int = 1,
               verify: bool = True, server: dict | None = None):
    """(runtime object, spec) for a run directory / exported artifact / server URL; ``None``: the default zoo model.

    A server URL (``http://HOST:PORT``) opens the triton client runtime with ``server`` options (``timeout``).

    An artifact inside a run must be the file its manifest lists (``verify``; see ``Run.verify``)."""
    from ..runtimes.registry import load
    from ..runtimes.triton import is_server_url

    if is_server_url(path):  # `demo --server URL`: the model lives in `edgeaffect serve`; late answers are dropped
        rt = load(str(path), runtime="triton", on_late="drop", **(server or {}))
        return rt, rt.spec
    if runtime not in runtime_choices():
        raise EdgeAffectError(f"unknown runtime {runtime!r}; choose from {', '.join(runtime_choices())}")
    path = Path(path) if path is not None else zoo.default_run()
    if not path.exists():
        raise EdgeAffectError(f"no model at {path}: give a run directory or an exported model, "
                              f"or import one with `edgeaffect zoo import fer2013`")
    if path.is_dir() and runtime == "auto":
        ensure_compiled(path)
    if path.is_dir() and precision == "auto":
        runtime, precision = choose_precision(path, runtime)
    options = {"threads": threads}
    if path.is_dir() or precision != "auto":  # a bare file runs as it is stored unless a precision is named
        options["precision"] = precision
    if path.is_dir():
        # the run's manifest is authoritative (and covers artifacts that do not embed the spec); read it
        # directly: a deploy bundle is a run folder without the checkpoint
        options["spec"] = manifest_spec(path)
        path, runtime = resolve_artifact(path, runtime, precision)
    elif runtime == "auto":
        runtime = None
    if verify:
        _verify(path)
    rt = load(path, runtime=runtime, **options)
    spec = rt.spec if isinstance(rt.spec, ModelSpec) else None
    if spec is None:
        raise EdgeAffectError(f"{path} carries no model spec (export it with edgeaffect so the labels and "
                              f"preprocessing travel with it)")
    return rt, spec


def ensure_compiled(run: Path) -> bool:
    """Export a run that has only its checkpoint (ONNX and IR, parity-checked), once, so ``auto`` does not
    fall back to torch eager; True when it exported.

    Why on first use rather than refusing: runs trained or imported before ``zoo import`` exported, or never
    exported, would otherwise run torch without a word; the export takes seconds, is recorded in the run's
    manifest and is reused by every later run.  A run that cannot be written (or whose export fails) keeps
    running torch, said in one line."""
    from ..runtimes.registry import discover_artifacts

    if not (run / CHECKPOINT).is_file() or not zoo.compiled_runtimes() or \
            any(a.runtime != "torch" for a in discover_artifacts(run)):
        return False
    log.warning("%s has no compiled model: exporting it once (ONNX, OpenVINO IR; parity-checked)", run)
    try:
        return bool(zoo.compile_run(run))
    except (EdgeAffectError, OSError) as exc:
        log.warning("export of %s failed (%s): running the checkpoint in torch", run, exc)
        return False


def manifest_spec(run: Path) -> ModelSpec:
    """The model spec of a run or bundle folder, from its ``manifest.json`` (a malformed one is one line)."""
    manifest = run / "manifest.json"
    if not manifest.is_file():
        raise EdgeAffectError(f"{run} has no manifest.json: not an edgeaffect run or bundle folder")
    return read_spec(read_manifest(run), manifest)


def _verify(path: Path) -> None:
    from ..runtimes.registry import artifact_files

    run = run_of(path)
    if run is not None:
        run.verify(*artifact_files(path))
