"""torch -> ONNX (+ OpenVINO IR, TensorRT engine), with the spec embedded and parity checked.

Plain functions, reused by the quantize stage:

- :func:`export_onnx` writes a self-describing ONNX (names from the ModelSpec,
  dynamic batch, spec JSON in ``metadata_props['edgeaffect.spec']``, full
  ``onnx.checker`` pass);
- :func:`export_openvino` converts an ONNX to IR (static batch when fixed,
  FP16-compressed weights on request, spec in ``rt_info``);
- :func:`build_tensorrt_engine` writes ``tensorrt/<device>-cc<X.Y>-trt<ver>.<prec>.b<batches>.engine``;
- :func:`check_parity` compares a runtime with torch on real samples (through
  :mod:`edgeaffect.evaluate`) and fails loudly;
- :func:`export_run` is what ``edgeaffect export`` runs: the ONNX, then every runtime of
  the runtime table (:mod:`edgeaffect.runtimes.registry`) whose format is asked for,
  each built by the exporter its entry names.

Exporter: the dynamo exporter (``torch.onnx.export(dynamo=True)``) is the
default.  On the ERI model it gave half the nodes (205 vs 385) and the same ORT
latency as the TorchScript exporter measured interleaved (bs1 56.0 vs 57.9 ms,
bs8 509 vs 519 ms on a loaded shared machine), at a slower export (38 s vs
1.7 s); ``exporter="legacy"`` remains available.
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
from .evaluate import DEFAULT_LIMIT, Evaluation, Samples, drop_points, evaluate, load_samples
from .fileio import atomic_path
from .logs import quiet
from .runtimes.onnxfile import embed_spec, read_onnx_spec, set_onnx_spec  # noqa: F401 - the ONNX's spec, also for callers
from .runtimes.registry import ExportTarget, artifact_files, get_runtime, onnx_runtime, reference, unsupported
from .spec import ModelSpec

DEFAULT_OPSET = 18
FP16_TOLERANCE = 5e-2   # FP16 weights/activations: parity is checked against this looser bound
ONNX_NAME = "model.onnx"

# --------------------------------------------------------------------------------------------- ONNX
def export_onnx(model, path: str | os.PathLike, *, batch: int | None = None, opset: int = DEFAULT_OPSET,
                exporter: str = "dynamo", spec: ModelSpec | None = None) -> Path:
    """Export ``model`` (with a ``.spec``) to ONNX at ``path``; dynamic batch unless ``batch`` is given."""
    import torch

    spec = spec or model.spec
    if exporter not in ("dynamo", "legacy"):
        raise EdgeAffectError(f"unknown ONNX exporter {exporter!r} (use dynamo or legacy)")
    model = model.eval()
    example_batch = batch or 2  # 2, not 1: a size-1 example can specialise the batch away
    feeds = spec.dummy_inputs(batch=example_batch)
    args = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
    kw: dict[str, Any] = dict(input_names=spec.input_names, output_names=spec.output_names, opset_version=opset)
    if exporter == "dynamo":
        kw["dynamo"] = True
        kw["external_data"] = False
        if batch is None:
            dim = torch.export.Dim("B", min=1, max=4096)
            kw["dynamic_shapes"] = _dynamo_shapes(model, spec, dim)
    else:
        kw["dynamo"] = False
        if batch is None:
            kw["dynamic_axes"] = {t.name: {0: "B"} for t in (*spec.inputs, *spec.outputs) if t.shape[:1] == ("B",)}
    path = Path(path)
    with atomic_path(path) as tmp, quiet():
        try:
            with torch.no_grad():
                torch.onnx.export(model, args, str(tmp), **kw)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgeAffectError(f"ONNX export ({exporter}) of {spec.name} failed: {msg}") from exc
        _finish_onnx(tmp, spec, batch)
    return path


def _dynamo_shapes(model, spec: ModelSpec, dim) -> Any:
    import inspect

    shapes = tuple({0: dim} if t.shape[:1] == ("B",) else None for t in spec.inputs)
    params = list(inspect.signature(model.forward).parameters.values())
    if params and params[0].kind == inspect.Parameter.VAR_POSITIONAL:
        return {params[0].name: shapes}
    return shapes


def _finish_onnx(path: Path, spec: ModelSpec, batch: int | None) -> None:
    """Name the batch dim, embed the spec, and run the full checker (in place)."""
    import onnx

    proto = onnx.load(str(path))
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if batch is None and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "B"
    set_onnx_spec(proto, spec)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgeAffectError(f"exported ONNX for {spec.name} fails onnx.checker: {str(exc).splitlines()[0]}") from None
    onnx.save(proto, str(path))


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


def guard_precision(model, runtime, samples: Samples, *, max_drop: float, batch: int = 8,
                    reference: Evaluation | None = None) -> dict[str, Any]:
    """The accuracy guard for a reduced float precision (bf16/fp16): accepted when the task metric drops
    at most ``max_drop`` points below torch fp32 on ``samples`` (without targets: outputs within
    :data:`FP16_TOLERANCE`).  Returns the decision with its numbers, the executed precision and the machine."""
    from .precision import machine

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


def export_run(run_dir: str | os.PathLike, formats: Iterable[str] | None = None, *, batch: int | None = None,
               dynamic: bool = False, fp16: bool = False, precisions: Iterable[str] = (), max_drop: float = 1.0,
               opset: int = DEFAULT_OPSET, exporter: str = "dynamo",
               tolerance: float = 1e-3, data: str | os.PathLike | None = None, split: str = "val",
               samples_limit: int | None = DEFAULT_LIMIT, max_batch: int = 32, explicit: bool = False,
               progress: Callable[[str], None] | None = None, verify: bool = True) -> ExportReport:
    """Export a trained run to the requested formats, check parity, and record everything in the manifest.

    ``batch`` fixes the batch of the ONNX/IR (static shapes) unless ``dynamic``; with
    ``dynamic`` it is the optimisation batch of the TensorRT profile.  A format whose
    runtime is not installed is skipped with a note, or is an error when ``explicit``.
    ``precisions`` (bf16, fp16; ``fp16=True`` is short for fp16) adds reduced float precisions
    for every format that runs them on this machine, each through :func:`guard_precision`.
    Parity and the guard score the same samples (``samples_limit`` of the split, evenly spaced; None: all).
    """
    from .runs import load_run, writer_lock

    run = load_run(run_dir)
    with writer_lock(run.path, "edgeaffect export"):
        return _export_locked(run, _check_formats(formats), batch=batch, dynamic=dynamic, reduced=_reduced(precisions, fp16),
                              max_drop=max_drop, opset=opset, exporter=exporter, tolerance=tolerance, data=data,
                              split=split, samples_limit=samples_limit, max_batch=max_batch, explicit=explicit,
                              progress=progress, verify=verify)


def _export_locked(run, formats: list[str], *, batch, dynamic, reduced, max_drop, opset, exporter, tolerance, data,
                   split, samples_limit, max_batch, explicit, progress, verify) -> ExportReport:
    from .precision import machine
    from .runs import load_model

    if verify:
        run.verify(run.checkpoint)
    model = load_model(run.checkpoint)
    static = batch if (batch and not dynamic) else None
    job = _ExportJob(run, model, ExportReport(), progress or (lambda msg: None), static, tolerance, explicit,
                     max_drop, reduced, opt_batch=batch or 1, max_batch=max_batch)
    job.load_samples(data or run.data_dir, split, samples_limit)
    with _staging(run.path) as job.staging:
        onnx_path = job.onnx(opset, exporter)
        for entry in _targets(formats):
            job.runtime(entry, onnx_path)
    report = job.report
    run.update(export={"formats": formats, "batch": static, "opset": opset, "exporter": exporter,
                       "samples": job.samples.source, "parity": [p.to_dict() for p in report.parity],
                       "skipped": report.skipped, "machine": machine()})
    if report.precisions:
        run.update(precisions=report.precisions)
    return report


def _check_formats(formats: Iterable[str] | None) -> list[str]:
    """The asked file formats (default: all in the runtime table), each one the table knows."""
    from .runtimes.registry import file_formats

    known = file_formats()
    formats = list(known if formats is None else formats)
    bad = [f for f in formats if f not in known]
    if bad:
        raise EdgeAffectError(f"unknown export format {bad[0]!r}; choose from {', '.join(known)}")
    return formats


def _reduced(precisions: Iterable[str], fp16: bool) -> tuple[str, ...]:
    from .precision import REDUCED_FLOAT, check_precisions

    reduced = [p for p in check_precisions([*precisions, *(["fp16"] if fp16 else [])]) if p != "fp32"]
    if any(p not in REDUCED_FLOAT for p in reduced):
        raise EdgeAffectError(f"export --precision takes {', '.join(REDUCED_FLOAT)} (INT8 is --int8), got {reduced}")
    return tuple(dict.fromkeys(reduced))


def _targets(formats: Sequence[str]):
    """Runtime-table entries whose artifact is one of ``formats`` (the ONNX's own runtime first)."""
    from .runtimes.registry import get_runtime, list_runtimes

    return [get_runtime(n) for n in list_runtimes() if get_runtime(n).file_format in ("onnx", *formats)]


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
        from .evaluate import open_scored, scoring_batch

        with open_scored(path, runtime_name, precision) as rt:   # opened and scored as eval, bench and the guard do
            p = check_parity(self.model, rt, self.samples, tolerance=self.tolerance, batch=scoring_batch(rt),
                             precision=precision, reference=self.reference)
        self.report.parity.append(p)
        return p

    def guarded(self, runtime_name: str, path: Path, precision: str, shared: bool = False) -> None:
        """Run the guard; an accepted file is published, a refused one removed with any earlier file of that
        name (a shared fp32 file stays: only its use in ``precision`` is refused)."""
        from .evaluate import open_scored, scoring_batch

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
