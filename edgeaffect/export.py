"""``export_run``: a trained run -> every asked runtime's artifact, parity-checked against torch and listed
in the manifest, as one library call (``edgeaffect export`` parses its options and prints what this returns).

- ``model.onnx`` first (:func:`~edgeaffect.runtimes.onnxfile.export_onnx`: names from the ModelSpec, dynamic
  batch, the spec in its metadata, the full ``onnx.checker`` pass); every other artifact is built from it by
  the exporter in its runtime's package (``edgeaffect/runtimes/<name>/``), named by its table entry;
- :func:`check_parity` compares each with torch on real samples (through :mod:`edgeaffect.evaluate`) and
  fails loudly; :func:`guard_precision` accepts or refuses a reduced float (bf16/fp16);
- ``prune=`` first writes ``<run>/pruned-<ratio>/`` and ``int8=`` then runs the INT8 pipeline
  (:mod:`edgeaffect.quantize.pipeline`) for the asked runtimes that have an INT8 path.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import EdgeAffectError
from .evaluate import (DEFAULT_LIMIT, Evaluation, Samples, drop_points, evaluate, load_samples, open_scored,
                       scoring_batch)
from .precision import REDUCED_FLOAT, check_precisions, machine
from .quantize.config import QuantConfig
from .quantize.pipeline import check_runtimes as check_int8_runtimes
from .quantize.pipeline import preflight, quantize_run
from .quantize.prune import PruneConfig, prune_run
from .runs import load_model, load_run, open_run, writer_lock
from .runtimes.onnxfile import DEFAULT_OPSET, embed_spec, export_onnx, read_onnx_spec  # noqa: F401 - also for callers
from .runtimes.registry import (ExportTarget, artifact_files, get_runtime, list_runtimes, onnx_runtime, quantizable,
                                reference, unsupported)

FP16_TOLERANCE = 5e-2   # FP16 weights/activations: parity is checked against this looser bound
ONNX_NAME = "model.onnx"

# ------------------------------------------------------------------------------------------- parity
@dataclass
class Parity:
    runtime: str
    samples: str
    n: int
    max_abs_diff: float
    metric_name: str
    metric_torch: float | None
    metric: float | None
    agreement: float
    tolerance: float
    precision: str = "fp32"
    agreement_kind: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_reference(model, samples: Samples, batch: int = 8) -> Evaluation:
    """Torch fp32 eager on ``samples``: the reference every exported artifact is compared with."""
    with get_runtime(reference()).load_class().from_module(model) as rt:
        return evaluate(rt, samples, model.spec, batch=batch)


def check_parity(model, runtime, samples: Samples, *, tolerance: float = 1e-3, batch: int = 8,
                 precision: str = "fp32", reference: Evaluation | None = None) -> Parity:
    """Run ``runtime`` on ``samples`` beside torch; raise if they differ by more than ``tolerance``."""
    reference = reference or torch_reference(model, samples, batch)
    ev = evaluate(runtime, samples, model.spec, reference.outputs, batch)
    diff = ev.comparison["max_abs_diff"]
    parity = Parity(runtime.name, samples.source, len(samples), diff, ev.metric_name, reference.metric, ev.metric,
                    ev.comparison["agreement"], tolerance, precision, ev.comparison["kind"])
    if not np.isfinite(diff) or diff > tolerance:
        raise EdgeAffectError(f"{runtime.name} output differs from torch by {diff:.3g} (> tolerance {tolerance:g}) "
                              f"on {samples.source}; the export is wrong")
    return parity


# ------------------------------------------------------------------------------------------- export
@dataclass
class ExportReport:
    artifacts: dict[str, Path] = field(default_factory=dict)
    parity: list[Parity] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    precisions: dict[str, dict[str, Any]] = field(default_factory=dict)   # guard decisions for bf16/fp16
    run: Path | None = None                      # the run exported (``<run>/pruned-<ratio>`` with ``prune``)
    int8: dict[str, Any] | None = None           # the INT8 report (``quantize/report.json``) with ``int8``

    def unmet(self, precisions: Iterable[str]) -> list[str]:
        """Reduced floats asked for that no runtime's guard accepted."""
        return [p for p in precisions if not any(k.endswith(f"-{p}") and d["accepted"] for k, d in self.precisions.items())]


def guard_precision(model, runtime, samples: Samples, *, max_drop: float, batch: int = 8,
                    reference: Evaluation | None = None) -> dict[str, Any]:
    """The accuracy guard for a reduced float precision (bf16/fp16): accepted when the task metric drops
    at most ``max_drop`` points below torch fp32 on ``samples`` (without targets: outputs within
    :data:`FP16_TOLERANCE`).  Returns the decision with its numbers, the executed precision and the machine."""
    reference = reference or torch_reference(model, samples, batch)
    ev = evaluate(runtime, samples, model.spec, reference.outputs, batch)
    m_ref, m_out, diff = reference.metric, ev.metric, ev.comparison["max_abs_diff"]
    decision: dict[str, Any] = {
        "runtime": runtime.name, "precision": runtime.precision, "executed_precision": runtime.executed_precision,
        "samples": samples.source, "n": len(samples), "metric_name": ev.metric_name, "metric_fp32": m_ref,
        "metric": m_out, "max_abs_diff": diff, "agreement": ev.comparison["agreement"],
        "agreement_kind": ev.comparison["kind"], "max_drop": max_drop, "machine": machine()}
    if m_ref is not None and m_out is not None:
        drop = drop_points(model.spec, m_ref, m_out)
        decision.update(drop_points=drop, accepted=bool(np.isfinite(drop) and drop <= max_drop))
        decision["reason"] = (f"{ev.metric_name} {m_out:.4f} vs fp32 {m_ref:.4f}: drop {drop:.2f} point(s) "
                              f"{'within' if decision['accepted'] else 'exceeds'} --max-drop {max_drop:g}")
    else:
        decision.update(drop_points=None, accepted=bool(np.isfinite(diff) and diff <= FP16_TOLERANCE))
        decision["reason"] = (f"no targets ({samples.source}): max|diff| {diff:.3g} "
                              f"{'within' if decision['accepted'] else 'exceeds'} {FP16_TOLERANCE:g}")
    return decision


def export_run(run_dir: str | os.PathLike, runtimes: Iterable[str] | None = None, *, precisions: Iterable[str] = (),
               int8: QuantConfig | None = None, prune: PruneConfig | None = None, batch: int | None = None,
               dynamic: bool = False, fp16: bool = False, max_drop: float = 1.0, opset: int = DEFAULT_OPSET,
               exporter: str = "dynamo", tolerance: float = 1e-3, data: str | os.PathLike | None = None,
               split: str = "val", samples_limit: int | None = DEFAULT_LIMIT, max_batch: int = 32,
               explicit: bool = False, progress: Callable[[str], None] | None = None, verify: bool = True,
               console=None) -> ExportReport:
    """A trained run -> the artifact of every asked runtime, parity-checked and listed in the manifest.

    ``runtimes``: runtime names (or their file formats: onnx, openvino, tensorrt; default every one with an
    exporter); ``model.onnx`` is always written, the others are built from it.  One that is not installed is
    skipped with a note, or is an error when ``explicit``.  ``precisions`` (bf16, fp16; ``fp16=True`` is short
    for fp16) adds reduced floats wherever this machine runs them, each through :func:`guard_precision`.
    ``prune`` first writes ``<run>/pruned-<ratio>/`` and exports that; ``int8`` then quantizes, through the
    accuracy guard, for the asked runtimes that have an INT8 path (everything is checked before anything is
    written).  ``batch`` fixes the batch of the ONNX/IR unless ``dynamic`` (then: TensorRT's opt batch).
    Parity and the guard score the same samples (``samples_limit`` of the split, evenly spaced; None: all).
    """
    names = _check_runtimes(runtimes)
    reduced = _reduced(precisions, fp16)
    if prune is not None:
        prune.check()
    quantized = _int8_runtimes(run_dir, names if runtimes is not None else None, int8, data)
    if prune is not None:
        if int8 is None:
            open_run(run_dir)   # a missing checkpoint or another model's manifest: one line, before pruning
        run_dir = prune_run(run_dir, prune.ratio, importance=prune.importance, finetune_epochs=prune.finetune_epochs,
                            data_root=data, console=console)
    run = load_run(run_dir)
    with writer_lock(run.path, "edgeaffect export"):
        report = _export_locked(run, names, batch=batch, dynamic=dynamic, reduced=reduced, max_drop=max_drop,
                                opset=opset, exporter=exporter, tolerance=tolerance, data=data, split=split,
                                samples_limit=samples_limit, max_batch=max_batch, explicit=explicit,
                                progress=progress, verify=verify)
    report.run = run.path
    if quantized:
        report.int8 = quantize_run(run.path, quantized, int8, data_root=data, console=console, verify=verify)
    return report


def _int8_runtimes(run_dir, asked: list[str] | None, config: QuantConfig | None, data) -> list[str]:
    """The runtimes INT8 is made for (the asked ones that have an INT8 path; default every installed one), with
    the run and its calibration split checked: nothing is written when INT8 could not follow."""
    if config is None:
        return []
    if asked:   # the asked runtimes that have an INT8 path (none: the refusal names them)
        asked = [n for n in asked if n in quantizable()] or asked
    chosen = check_int8_runtimes(asked)
    preflight(run_dir, config, data)
    return chosen


def _export_locked(run, names: list[str], *, batch, dynamic, reduced, max_drop, opset, exporter, tolerance, data,
                   split, samples_limit, max_batch, explicit, progress, verify) -> ExportReport:
    if verify:
        run.verify(run.checkpoint)
    model = load_model(run.checkpoint)
    static = batch if (batch and not dynamic) else None
    job = _ExportJob(run, model, ExportReport(), progress or (lambda msg: None), static, tolerance, explicit,
                     max_drop, reduced, opt_batch=batch or 1, max_batch=max_batch)
    job.load_samples(data or run.data_dir, split, samples_limit)
    with _staging(run.path) as job.staging:
        onnx_path = job.onnx(opset, exporter)
        for entry in _targets(names):
            job.runtime(entry, onnx_path)
    report = job.report
    run.update(export={"formats": [get_runtime(n).file_format for n in names], "runtimes": names, "batch": static, "opset": opset, "exporter": exporter,
                       "samples": job.samples.source, "parity": [p.to_dict() for p in report.parity],
                       "skipped": report.skipped, "machine": machine()})
    if report.precisions:
        run.update(precisions=report.precisions)
    return report


def _check_runtimes(names: Iterable[str] | None) -> list[str]:
    """The asked runtimes (a file format names its runtime: onnx -> onnxruntime), each one the table exports;
    default: every one."""
    exported = [n for n in list_runtimes() if get_runtime(n).file_format]
    if names is None:
        return exported
    alias = {get_runtime(n).file_format: n for n in exported}
    out = []
    for name in names:
        if name not in exported and name not in alias:
            raise EdgeAffectError(f"unknown runtime {name!r} (unknown export format {name!r}); choose runtimes "
                                  f"from {', '.join(exported)} or their formats {', '.join(alias)}")
        out.append(alias.get(name, name))
    return list(dict.fromkeys(out))


def _reduced(precisions: Iterable[str], fp16: bool) -> tuple[str, ...]:
    reduced = [p for p in check_precisions([*precisions, *(["fp16"] if fp16 else [])]) if p != "fp32"]
    if any(p not in REDUCED_FLOAT for p in reduced):
        raise EdgeAffectError(f"export --precision takes {', '.join(REDUCED_FLOAT)} (INT8 is --int8), got {reduced}")
    return tuple(dict.fromkeys(reduced))


def _targets(names: Sequence[str]):
    """Runtime-table entries asked for, in table order (the ONNX's own runtime always: every artifact starts there)."""
    return [get_runtime(n) for n in list_runtimes() if n in names or n == onnx_runtime()]


@dataclass
class _ExportJob:
    """One export: the run, its model, and what has been written, checked and skipped so far.

    Every artifact is built in a staging folder inside the run and moved to its name only once its
    parity check or accuracy guard passed, so a failed export never leaves a file others pick up.
    """

    run: Any
    model: Any
    report: ExportReport
    say: Callable[[str], None]
    static: int | None
    tolerance: float
    explicit: bool
    max_drop: float
    reduced: tuple[str, ...]
    opt_batch: int = 1
    max_batch: int = 32
    samples: Samples | None = None
    reference: Evaluation | None = None
    staging: Path | None = None

    def load_samples(self, root, split: str, limit: int | None) -> None:
        self.samples = load_samples(self.model.spec, root, split, limit=limit, dataset_kwargs=self.run.dataset_kwargs)
        self.say(f"parity samples: {self.samples.source}")
        self.reference = torch_reference(self.model, self.samples, self.static or 8)

    def publish(self, staged: Path, runtime_name: str, precision: str, **info: Any) -> Path:
        """Move a checked artifact (and the files that travel with it) to its name in the run; list them."""
        moved = []
        for f in reversed(artifact_files(staged)):   # the IR's .bin before its .xml
            dest = self.run.path / f.relative_to(self.staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
            moved.insert(0, dest)
        final = moved[0]
        self.run.record_artifact(final, *moved[1:], runtime=runtime_name, precision=precision, **info)
        self.report.artifacts[f"{runtime_name}-{precision}"] = final
        return final

    def onnx(self, opset: int, exporter: str) -> Path:
        """``model.onnx``, checked against torch where ONNX Runtime is installed: what the other formats start from."""
        staged = self.staging / ONNX_NAME
        self.say(f"exporting ONNX ({exporter}, opset {opset}, batch {self.static or 'dynamic'})")
        export_onnx(self.model, staged, batch=self.static, opset=opset, exporter=exporter)
        entry = get_runtime(onnx_runtime())
        parity = {} if entry.missing() else self.checked(entry.name, staged).to_dict()
        return self.publish(staged, entry.name, "fp32", opset=opset, exporter=exporter, batch=self.static,
                            parity=parity)

    def runtime(self, entry, onnx_path: Path) -> None:
        """Every precision of one runtime: fp32 with parity, reduced floats through the guard."""
        missing = entry.missing()
        if missing:
            why = f"{missing[0]} is not installed (pip install 'edgeaffect[{entry.extra}]')"
            return _skip(self.report, entry.file_format if entry.exporter else f"{entry.file_format} parity", why,
                         self.explicit and bool(entry.exporter))
        for precision in ("fp32", *self.reduced):
            reason = None if precision == "fp32" else self.unsupported(entry, precision)
            if reason:
                self.report.skipped[f"{entry.name}-{precision}"] = reason
                continue
            if entry.shares(precision):   # bf16 from the fp32 file: an execution setting, guarded as such
                self.guarded(entry.name, self.run.path / entry.artifacts[precision], precision, shared=True)
                continue
            if not entry.exporter:        # the ONNX itself (written and checked by onnx())
                continue
            staged = self.build(entry, onnx_path, precision)
            if staged is None:
                continue
            if precision == "fp32":
                parity = self.checked(entry.name, staged).to_dict()
                self.publish(staged, entry.name, precision, batch=self.static, parity=parity)
            else:
                self.guarded(entry.name, staged, precision)

    def unsupported(self, entry, precision: str) -> str | None:
        """Why this machine (or this runtime's exporter) cannot give ``precision``, or None."""
        reason = unsupported(entry.name, precision)
        if reason is None and not entry.exporter and not entry.shares(precision):
            reason = f"no {precision} exporter for {entry.name}"
        return reason

    def build(self, entry, onnx_path: Path, precision: str) -> Path | None:
        """The staged artifact, or None when a reduced precision cannot be built (the reason is reported)."""
        self.say(f"building the {entry.name} {precision} artifact")
        target = ExportTarget(self.staging, precision, self.static, self.opt_batch, self.max_batch, self.model.spec)
        try:
            return entry.export(onnx_path, target)
        except EdgeAffectError as exc:
            if precision == "fp32":
                raise
            self.report.skipped[f"{entry.name}-{precision}"] = str(exc)   # e.g. no fp16 ONNX converter installed
            return None

    def checked(self, runtime_name: str, path: Path, precision: str = "fp32") -> Parity:
        with open_scored(path, runtime_name, precision) as rt:   # opened and scored as eval, bench and the guard do
            p = check_parity(self.model, rt, self.samples, tolerance=self.tolerance, batch=scoring_batch(rt),
                             precision=precision, reference=self.reference)
        self.report.parity.append(p)
        return p

    def guarded(self, runtime_name: str, path: Path, precision: str, shared: bool = False) -> None:
        """Run the guard; an accepted file is published, a refused one removed with any earlier file of that
        name (a shared fp32 file stays: only its use in ``precision`` is refused)."""
        self.say(f"accuracy guard {runtime_name} {precision} on {self.samples.source}")
        with open_scored(path, runtime_name, precision) as rt:
            decision = guard_precision(self.model, rt, self.samples, max_drop=self.max_drop,
                                       batch=scoring_batch(rt), reference=self.reference)
        root = self.run.path if shared else self.staging
        decision["artifact"] = os.path.relpath(path, root)
        self.report.precisions[f"{runtime_name}-{precision}"] = decision
        if shared:
            if decision["accepted"]:
                self.report.artifacts[f"{runtime_name}-{precision}"] = path
        elif decision["accepted"]:
            self.publish(path, runtime_name, precision, batch=self.static, guard=decision["reason"])
        else:
            stale = self.run.path / path.relative_to(self.staging)
            self.run.forget(*(stale, *artifact_files(stale)))


def _skip(report: ExportReport, fmt: str, why: str, explicit: bool) -> None:
    if explicit:
        raise EdgeAffectError(f"cannot export {fmt}: {why}")
    report.skipped[fmt] = why


@contextlib.contextmanager
def _staging(run_dir: Path):
    """A scratch folder inside the run (same file system, so publishing is a rename), removed after.

    Called under the run's writer lock, so any other ``.export-*`` folder was left by a killed export: removed.
    """
    for stale in Path(run_dir).glob(".export-*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=".export-", dir=run_dir))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
