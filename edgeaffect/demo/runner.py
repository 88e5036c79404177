"""Open a model for the demo through the runtime interface (``edgeaffect.load``): ``infer(dict) -> dict``.

A run directory is resolved to the artifact for the asked runtime and precision
by its conventional name (``checkpoint.pt``, ``model.onnx``, ``model.int8.onnx``,
``openvino/model[.int8].xml``, ``tensorrt/*.engine``); an exported file is
opened as it is.  ``runtime="auto"`` takes the fastest one the run has, and never
torch where a compiled runtime is installed: a run with only its checkpoint is
exported once on first use (:func:`ensure_compiled`).  "Fastest" is measured, not
assumed: where the run has several compiled runtimes for the chosen precision, each
is opened and timed on this machine, interleaved, for a fraction of a second
(:func:`open_fastest`).  On a 2-core AMD EPYC (AVX2) the same 64x64 FER model took
0.41 ms per call in ONNX Runtime and 0.62 ms in OpenVINO, while a larger model can
rank the other way; a fixed order would be wrong for one of them.
"""
from __future__ import annotations

import logging
import statistics
from pathlib import Path
from types import SimpleNamespace

from .. import zoo
from ..errors import EdgeAffectError
from ..fileio import read_json
from ..precision import cpu_name
from ..runs import CHECKPOINT, read_manifest, read_spec, run_of
from ..spec import ModelSpec

PROBE_S = 0.3
"""Seconds of interleaved timing ``--runtime auto`` spends comparing a run's compiled runtimes when it opens."""

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
    """(runtime, precision) that ``--precision auto`` considers for a run folder: int8 where some runtime here has
    an INT8 artifact the accuracy guard accepted and that bench, on this CPU, did not find slower than its fp32
    at batch 1 (the best-ranked such runtime); else fp32 on ``runtime``.  ``open_model`` then times such INT8
    artifacts against the fp32 ones and runs the fastest: a guard's acceptance says INT8 is accurate enough,
    not that it is faster on this CPU (without VNNI it often is not)."""
    found = candidates(run, runtime, "int8", chosen=True)
    return (found[0].runtime, "int8") if found else (runtime, "fp32")


def candidates(run: Path, runtime: str, precision: str, chosen: bool = False) -> list:
    """The artifacts of a run folder that may run at ``precision``, best-ranked first; torch only where no
    compiled runtime has one.  ``chosen`` (by ``--precision auto``): a reduced precision only where its guard
    accepted it and bench did not find it slower here."""
    from ..runtimes.registry import eligible_artifacts

    avoid = {(rt, "int8") for rt in _int8_slower_here(run)} if chosen else set()
    found = eligible_artifacts(run, runtime, [precision], avoid=avoid, accepted_only=chosen)
    return [a for a in found if not a.entry.reference] or found


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
               verify: bool = True, server: dict | None = None, batch: int = 1):
    """(runtime object, spec) for a run directory / exported artifact / server URL; ``None``: the default zoo model.

    A server URL (``http://HOST:PORT``) opens the triton client runtime with ``server`` options (``timeout``).

    An artifact inside a run must be the file its manifest lists (``verify``; see ``Run.verify``).  ``batch``:
    the faces per call the caller expects, at which ``auto`` times a run's runtimes (:func:`open_fastest`)."""
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
    chosen = path.is_dir() and precision == "auto"
    if chosen:
        precision = choose_precision(path, runtime)[1]
    options = {"threads": threads}
    if path.is_dir() or precision != "auto":  # a bare file runs as it is stored unless a precision is named
        options["precision"] = precision
    if path.is_dir():
        # the run's manifest is authoritative (and covers artifacts that do not embed the spec); read it
        # directly: a deploy bundle is a run folder without the checkpoint
        options["spec"] = manifest_spec(path)
        found = candidates(path, runtime, precision, chosen)
        if chosen and precision != "fp32":   # an accepted INT8 runs only where it is the faster here too
            found += [a for a in candidates(path, runtime, "fp32") if not a.entry.reference]
        if (runtime == "auto" or chosen) and len(found) > 1:
            return _with_spec(open_fastest(found, options, verify, batch))
        # the one candidate; none: resolve_artifact says why in one line
        path, runtime = (found[0].path, found[0].runtime) if found else resolve_artifact(path, runtime, precision)
    elif runtime == "auto":
        runtime = None
    if verify:
        _verify(path)
    return _with_spec(load(path, runtime=runtime, **options))


def _with_spec(rt):
    """(runtime, spec): an artifact without a spec cannot be run by the demo (no labels, no preprocessing)."""
    if not isinstance(rt.spec, ModelSpec):
        path = rt.path
        rt.close()
        raise EdgeAffectError(f"{path} carries no model spec (export it with edgeaffect so the labels and "
                              f"preprocessing travel with it)")
    return rt, rt.spec


def open_fastest(found: list, options: dict, verify: bool = True, batch: int = 1):
    """Open every artifact of ``found`` and keep the one that ran the model fastest here; the others are closed.

    The demo's calls change size from one to the next (the faces ready in a round), and a runtime can pay for
    each change: OpenVINO's CPU plugin took 0.38-0.57 ms per face at a fixed batch and 0.59-0.97 ms when the
    batch changed every call, where ONNX Runtime stayed at 0.37-0.55 (2-core AMD EPYC, the FER model).  So one
    timed unit is a call at each of :func:`probe_batches` in turn, the units interleaved for :data:`PROBE_S`
    seconds, and the score is the median unit's ms per face.  The kept runtime's ``chosen_because`` says what
    was measured."""
    from ..runtimes.registry import load
    from ..timing import time_interleaved

    batches, opened = probe_batches(batch), []
    try:
        for a in found:
            if verify:
                _verify(a.path)
            opened.append(load(a.path, runtime=a.runtime, **{**options, "precision": a.precision}))
        trials = [SimpleNamespace(runtime=_BatchCycle(rt, options["spec"], batches), feeds=None, times=[])
                  for rt in opened]
        time_interleaved(trials, PROBE_S, rounds=4, warmup=2)
    except BaseException:
        for rt in opened:
            rt.close()
        raise
    per_face = {rt: statistics.median(t.times) / sum(batches) for rt, t in zip(opened, trials)}
    best = min(opened, key=per_face.get)
    for rt in opened:
        if rt is not best:
            rt.close()
    best.chosen_because = (f"timed fastest here, median ms per face at batch {', '.join(map(str, batches))}: " +
                           ", ".join(f"{rt.name} {rt.precision} {per_face[rt] * 1e3:.2f}"
                                     for rt in sorted(opened, key=per_face.get)))
    log.info("%s %s", best.name, best.chosen_because)
    return best


def probe_batches(batch: int) -> list[int]:
    """The batch sizes one probe unit calls in turn: 1 to ``batch``, at most 4.  A round's call holds the faces
    ready then, a few even with many sources (16 sources: 1,512 calls in 12 s for about 5,300 faces, 3.5 per
    call), so larger batches, where the runtimes differ least, would weigh most and rank them wrongly."""
    return list(range(1, min(max(batch, 1), 4) + 1))


class _BatchCycle:
    """A runtime seen by the probe's timer: one ``infer`` is a call at each batch size in turn."""

    def __init__(self, rt, spec: ModelSpec, batches: list[int]):
        self.rt, self.feeds = rt, [spec.dummy_inputs(batch=b) for b in batches]

    def infer(self, _feeds=None) -> None:
        for feeds in self.feeds:
            self.rt.infer(feeds)


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
