"""torch -> ONNX (+ OpenVINO IR, TensorRT engine), with the spec embedded and parity checked.

Plain functions, reused by the quantize stage:

- :func:`export_onnx` writes a self-describing ONNX (names from the ModelSpec,
  dynamic batch, spec JSON in ``metadata_props['edgeaffect.spec']``, full
  ``onnx.checker`` pass);
- :func:`export_openvino` converts an ONNX to IR (static batch when fixed,
  FP16-compressed weights on request, spec in ``rt_info``);
- :func:`build_tensorrt_engine` writes ``tensorrt/<gpu>-trt<ver>[.<prec>].engine``;
- :func:`check_parity` compares a runtime with torch on real samples and fails loudly;
- :func:`discover_artifacts` lists a run's artifacts as (runtime, precision, path)
  rows, so bench picks up files written later (INT8, pruned) with no change;
- :func:`export_run` is what ``edgeaffect export`` runs.

Exporter: the dynamo exporter (``torch.onnx.export(dynamo=True)``) is the
default.  On the ERI model it gave half the nodes (205 vs 385) and the same ORT
latency as the TorchScript exporter measured interleaved (bs1 56.0 vs 57.9 ms,
bs8 509 vs 519 ms on a loaded shared machine), at a slower export (38 s vs
1.7 s); ``exporter="legacy"`` remains available.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .errors import EdgeAffectError
from .fileio import atomic_path, write_text
from .runtimes.base import SPEC_KEY, sidecar_path, spec_from_metadata
from .spec import ModelSpec

DEFAULT_OPSET = 18
FP16_TOLERANCE = 5e-2   # FP16 weights/activations: parity is checked against this looser bound
ONNX_NAME = "model.onnx"
FORMATS = ("onnx", "openvino", "tensorrt")

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
    with atomic_path(path) as tmp, _quiet():
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


def set_onnx_spec(proto, spec: ModelSpec) -> None:
    """Write the spec (and, for humans, labels/preprocessing) into ``metadata_props``."""
    entries = {SPEC_KEY: spec.to_json(), "edgeaffect.labels": json.dumps(list(spec.labels)),
               "edgeaffect.preprocessing": json.dumps(dict(spec.preprocessing), sort_keys=True),
               "edgeaffect.task": spec.task}
    keep = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = k, v


def embed_spec(onnx_path: str | os.PathLike, spec: ModelSpec) -> Path:
    """Rewrite an existing ONNX file (e.g. a quantized one) with the spec in its metadata, atomically."""
    import onnx

    proto = onnx.load(str(onnx_path))
    set_onnx_spec(proto, spec)
    with atomic_path(onnx_path) as tmp:
        onnx.save(proto, str(tmp))
    return Path(onnx_path)


def read_onnx_spec(onnx_path: str | os.PathLike) -> ModelSpec | None:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return spec_from_metadata({p.key: p.value for p in proto.metadata_props})


# ----------------------------------------------------------------------------------------- OpenVINO
def export_openvino(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, *, batch: int | None = None,
                    fp16: bool = False, spec: ModelSpec | None = None) -> Path:
    """ONNX -> OpenVINO IR (``.xml`` + ``.bin``), written atomically as a pair.

    ``batch`` fixes the batch dimension (static shapes are faster on CPU);
    ``fp16`` stores FP16-compressed weights (the CPU plugin computes in FP32 on
    machines without native FP16, so this mainly halves the size).
    """
    import openvino as ov

    from .runtimes.openvino import RT_INFO_PATH, ov_dims

    spec = spec or read_onnx_spec(onnx_path)
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        model = ov.convert_model(str(onnx_path))
    if batch:
        model.reshape({p.get_any_name(): [batch if i == 0 and d == -1 else d
                                          for i, d in enumerate(ov_dims(p.get_partial_shape()))]
                       for p in model.inputs})
    if spec is not None:
        model.set_rt_info(spec.to_json(), RT_INFO_PATH)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", suffix=".tmp", dir=xml_path.parent))
    try:
        tmp_xml = tmpdir / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=fp16)
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return xml_path


# ----------------------------------------------------------------------------------------- TensorRT
def build_tensorrt_engine(onnx_path: str | os.PathLike, out_dir: str | os.PathLike, *, fp16: bool = False,
                          precision: str | None = None, min_batch: int = 1, opt_batch: int = 1, max_batch: int = 8,
                          workspace_mb: int = 1024, int8: bool = False, int8_calibrator: Any = None,
                          spec: ModelSpec | None = None, device: int = 0) -> Path:
    """Build ``out_dir/<gpu>-trt<version>[.<precision>].engine`` from an ONNX file (atomic write).

    ``precision`` names the file (default from ``fp16``/``int8``); a spec json sidecar
    is written beside it so the engine is self-describing too.
    """
    from .runtimes import tensorrt as trt_rt

    gpu, version = trt_rt.current_device(device)
    precision = precision or ("int8" if (int8 or int8_calibrator is not None) else "fp16" if fp16 else "fp32")
    cuda = trt_rt.import_cuda()
    ctx = cuda.Device(device).retain_primary_context()
    ctx.push()
    try:
        plan = trt_rt.build_engine(onnx_path, fp16=fp16, min_batch=min_batch, opt_batch=opt_batch,
                                   max_batch=max_batch, workspace_mb=workspace_mb, int8=int8,
                                   int8_calibrator=int8_calibrator)
    finally:
        ctx.pop()
        ctx.detach()
    path = Path(out_dir) / trt_rt.engine_filename(gpu, version, precision)
    with atomic_path(path) as tmp:
        tmp.write_bytes(plan)
    spec = spec or (read_onnx_spec(onnx_path) if str(onnx_path).endswith(".onnx") else None)
    if spec is not None:
        write_text(sidecar_path(path), spec.to_json())
    return path


# ------------------------------------------------------------------------------------------- parity
@dataclass
class Samples:
    """Stacked real samples of a split (``feeds`` by input name, ``target``), or random ones."""

    feeds: dict[str, np.ndarray]
    target: np.ndarray | None
    source: str              # "val split of <root>" or "random (reason)"

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def batches(self, batch: int) -> Iterable[dict[str, np.ndarray]]:
        for i in range(0, len(self), batch):
            yield {k: v[i:i + batch] for k, v in self.feeds.items()}


def spread_indices(total: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(total)`` (all of them without a limit).

    Evenly spaced, not the first ``limit``: splits are stored video by video, so
    their head is a handful of clips, and a metric on it says little about the split.
    """
    if limit is None or limit >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max(int(limit), 1)).round().astype(np.int64))


def load_samples(spec: ModelSpec, data_root: str | os.PathLike | None, split: str = "val",
                 limit: int | None = 64, seed: int = 0, dataset_kwargs: Mapping[str, Any] | None = None) -> Samples:
    """Real samples from the task's dataset split; random inputs (said so in ``source``) if there is none.

    ``dataset_kwargs`` are the reader options the run recorded (``Run.dataset_kwargs``), so a run
    trained on a custom split is checked on that split.
    """
    reason = "no dataset recorded for this run" if data_root is None else None
    if data_root is not None and not Path(data_root).exists():
        reason = f"dataset {data_root} not found"
    if reason is None:
        try:
            from .train.tasks import get_task

            task = get_task(spec.task)
            ds = task.dataset(Path(data_root), split, spec, **(dataset_kwargs or {}))
        except EdgeAffectError as exc:
            reason = str(exc)
        except ImportError as exc:
            reason = f"task {spec.task!r} is not available ({exc})"
        else:
            total = len(ds)
            if total == 0:
                raise EdgeAffectError(f"the {split} split of {data_root} is empty")
            index = spread_indices(total, limit)
            items = [ds[int(i)] for i in index]
            feeds = {k: np.stack([np.asarray(it[k]) for it in items]).astype(t.np_dtype)
                     for k, t in ((t.name, t) for t in spec.inputs)}
            target = np.stack([np.asarray(it["target"]) for it in items])
            count = f"{len(index)} samples" if len(index) == total else f"{len(index)} of {total} samples, evenly spaced"
            return Samples(feeds, target, f"{split} split of {data_root} ({count})")
    n = limit or 16
    return Samples(spec.dummy_inputs(batch=n, seed=seed), None, f"random inputs ({reason})")


def task_metric(spec: ModelSpec, outputs: Mapping[str, np.ndarray], target: np.ndarray | None) -> tuple[str, float | None]:
    """(metric name, value) of the task's main metric, or (name, None) without targets."""
    name = spec.metric
    if target is None:
        return name, None
    from .train.tasks import get_task

    task = get_task(spec.task)
    return task.metric, float(task.metrics(dict(outputs), target)[task.metric])


def run_all(infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], samples: Samples,
            batch: int = 8) -> dict[str, np.ndarray]:
    """Concatenated outputs of ``infer`` over all samples in batches."""
    parts: dict[str, list[np.ndarray]] = {}
    for feeds in samples.batches(batch):
        for k, v in infer(feeds).items():
            parts.setdefault(k, []).append(np.asarray(v, np.float32))
    return {k: np.concatenate(v) for k, v in parts.items()}


def agreement(ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], activation: str = "none") -> float:
    """Fraction of samples where the runtime agrees with the reference.

    Classification outputs (softmax): same argmax.  Intensities/regression:
    every value within 0.01 of the reference (1 % of the [0, 1] range).
    """
    hits = []
    for k, r in ref.items():
        o = out[k].reshape(len(r), -1).astype(np.float64)
        r = r.reshape(len(r), -1).astype(np.float64)
        if activation == "softmax":
            hits.append(o.argmax(1) == r.argmax(1))
        else:
            hits.append(np.abs(o - r).max(1) <= 0.01)
    return float(np.mean(np.all(hits, axis=0)))


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_parity(model, runtime, samples: Samples, *, tolerance: float = 1e-3, batch: int = 8,
                 precision: str = "fp32") -> Parity:
    """Run torch and ``runtime`` on the same samples; raise if they differ by more than ``tolerance``."""
    from .runtimes.torch import TorchRuntime

    spec = model.spec
    with TorchRuntime.from_module(model) as ref_rt:
        ref = run_all(ref_rt.infer, samples, batch)
    out = run_all(runtime.infer, samples, batch)
    diff = max(float(np.abs(out[k] - ref[k]).max()) for k in ref)
    name, m_ref = task_metric(spec, ref, samples.target)
    _, m_out = task_metric(spec, out, samples.target)
    parity = Parity(runtime.name, samples.source, len(samples), diff, name, m_ref, m_out,
                    agreement(ref, out, spec.activation), tolerance, precision)
    if not np.isfinite(diff) or diff > tolerance:
        raise EdgeAffectError(f"{runtime.name} output differs from torch by {diff:.3g} (> tolerance {tolerance:g}) "
                              f"on {samples.source}; the export is wrong")
    return parity


# ---------------------------------------------------------------------------------------- discovery
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


def discover_artifacts(run_dir: str | os.PathLike, precisions: Iterable[str] = ()) -> list[Artifact]:
    """Every artifact of a run by its conventional name (the runtime table), also under ``pruned-<ratio>/``.

    A precision that runs from another precision's file (bf16 from the fp32 IR or checkpoint) is listed
    only when it is asked for in ``precisions``: it is a way to execute that file, not a file of its own.
    """
    from .runtimes.registry import get_runtime, list_runtimes
    from .runtimes.tensorrt import engine_precision

    run_dir = Path(run_dir)
    asked = set(precisions)
    roots = [("", run_dir)] + [(p.name, p) for p in sorted(run_dir.glob("pruned-*")) if p.is_dir()]
    rows: list[Artifact] = []
    for variant, root in roots:
        for name in list_runtimes():
            table = get_runtime(name).artifacts
            for precision, rel in table.items():
                shared = precision != "fp32" and rel == table.get("fp32")
                if (root / rel).is_file() and (not shared or precision in asked):
                    rows.append(Artifact(name, precision, root / rel, variant))
        for engine in sorted((root / "tensorrt").glob("*.engine")):
            rows.append(Artifact("tensorrt", engine_precision(engine), engine, variant))
    return rows


# ------------------------------------------------------------------------------------------- export
@dataclass
class ExportReport:
    artifacts: dict[str, Path] = field(default_factory=dict)
    parity: list[Parity] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    precisions: dict[str, dict[str, Any]] = field(default_factory=dict)   # guard decisions for bf16/fp16


def guard_precision(model, runtime, samples: Samples, *, max_drop: float, batch: int = 8) -> dict[str, Any]:
    """The accuracy guard for a reduced float precision (bf16/fp16): accepted when the task metric drops
    at most ``max_drop`` points below torch fp32 on ``samples`` (without targets: outputs within
    :data:`FP16_TOLERANCE`).  Returns the decision with its numbers, the executed precision and the machine."""
    from .precision import machine
    from .runtimes.torch import TorchRuntime

    with TorchRuntime.from_module(model) as ref_rt:
        ref = run_all(ref_rt.infer, samples, batch)
    out = run_all(runtime.infer, samples, batch)
    diff = max(float(np.abs(out[k] - ref[k]).max()) for k in ref)
    name, m_ref = task_metric(model.spec, ref, samples.target)
    _, m_out = task_metric(model.spec, out, samples.target)
    decision: dict[str, Any] = {
        "runtime": runtime.name, "precision": runtime.precision, "executed_precision": runtime.executed_precision,
        "samples": samples.source, "n": len(samples), "metric_name": name, "metric_fp32": m_ref, "metric": m_out,
        "max_abs_diff": diff, "agreement": agreement(ref, out, model.spec.activation), "max_drop": max_drop,
        "machine": machine()}
    if m_ref is not None and m_out is not None:
        from .train.tasks import get_task

        task = get_task(model.spec.task)
        drop = (1.0 if task.higher_is_better else -1.0) * (m_ref - m_out) / task.metric_scale
        decision.update(drop_points=drop, accepted=bool(np.isfinite(drop) and drop <= max_drop))
        decision["reason"] = (f"{name} {m_out:.4f} vs fp32 {m_ref:.4f}: drop {drop:.2f} point(s) "
                              f"{'within' if decision['accepted'] else 'exceeds'} --max-drop {max_drop:g}")
    else:
        decision.update(drop_points=None, accepted=bool(np.isfinite(diff) and diff <= FP16_TOLERANCE))
        decision["reason"] = (f"no targets ({samples.source}): max|diff| {diff:.3g} "
                              f"{'within' if decision['accepted'] else 'exceeds'} {FP16_TOLERANCE:g}")
    return decision


def export_run(run_dir: str | os.PathLike, formats: Iterable[str] = FORMATS, *, batch: int | None = None,
               dynamic: bool = False, fp16: bool = False, precisions: Iterable[str] = (), max_drop: float = 1.0,
               opset: int = DEFAULT_OPSET, exporter: str = "dynamo",
               tolerance: float = 1e-3, data: str | os.PathLike | None = None, split: str = "val",
               samples_limit: int = 32, max_batch: int = 32, explicit: bool = False,
               progress: Callable[[str], None] | None = None) -> ExportReport:
    """Export a trained run to the requested formats, check parity, and record everything in the manifest.

    ``batch`` fixes the batch of the ONNX/IR (static shapes) unless ``dynamic``; with
    ``dynamic`` it is the optimisation batch of the TensorRT profile.  A format whose
    runtime is not installed is skipped with a note, or is an error when ``explicit``.
    ``precisions`` (bf16, fp16; ``fp16=True`` is short for fp16) adds reduced float precisions
    for every format that runs them on this machine, each through :func:`guard_precision`.
    """
    from .precision import REDUCED_FLOAT, check_precisions, machine
    from .runs import load_model, load_run

    say = progress or (lambda msg: None)
    run = load_run(run_dir)
    formats = list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise EdgeAffectError(f"unknown export format {bad[0]!r}; choose from {', '.join(FORMATS)}")
    reduced = [p for p in check_precisions([*precisions, *(["fp16"] if fp16 else [])]) if p != "fp32"]
    if any(p not in REDUCED_FLOAT for p in reduced):
        raise EdgeAffectError(f"export --precision takes {', '.join(REDUCED_FLOAT)} (INT8 is --int8), got {reduced}")
    model = load_model(run.checkpoint)
    static = batch if (batch and not dynamic) else None
    job = _ExportJob(run, model, ExportReport(), say, static, tolerance, explicit, max_drop, tuple(dict.fromkeys(reduced)))
    job.samples = load_samples(model.spec, data or run.data_dir, split, limit=samples_limit,
                               dataset_kwargs=run.dataset_kwargs)
    say(f"parity samples: {job.samples.source}")
    if reduced:  # the guard scores the whole split, as the INT8 guard does
        job.guard_samples = load_samples(model.spec, data or run.data_dir, split, limit=None,
                                         dataset_kwargs=run.dataset_kwargs)
    onnx_path = job.onnx(opset, exporter)
    if "openvino" in formats:
        job.openvino(onnx_path)
    if "tensorrt" in formats:
        job.tensorrt(onnx_path, batch, max_batch)
    report = job.report
    run.update(export={"formats": formats, "batch": static, "opset": opset, "exporter": exporter,
                       "samples": job.samples.source, "parity": [p.to_dict() for p in report.parity],
                       "skipped": report.skipped, "machine": machine()})
    if report.precisions:
        run.update(precisions=report.precisions)
    return report


@dataclass
class _ExportJob:
    """One export: the run, its model, and what has been written, checked and skipped so far."""

    run: Any
    model: Any
    report: ExportReport
    say: Callable[[str], None]
    static: int | None
    tolerance: float
    explicit: bool
    max_drop: float
    reduced: tuple[str, ...]
    samples: Samples | None = None
    guard_samples: Samples | None = None

    def record(self, path: Path, runtime_name: str, precision: str, **info: Any) -> None:
        self.run.record_artifact(path, runtime=runtime_name, precision=precision, **info)
        self.report.artifacts[f"{runtime_name}-{precision}"] = path

    def checked(self, runtime_name: str, path: Path, precision: str = "fp32") -> Parity:
        from .runtimes.registry import load

        with load(path, runtime=runtime_name, precision=precision) as rt:
            p = check_parity(self.model, rt, self.samples, tolerance=self.tolerance, batch=self.static or 8,
                             precision=precision)
        self.report.parity.append(p)
        return p

    def onnx(self, opset: int, exporter: str) -> Path:
        from .runtimes.registry import get_runtime

        onnx_path = self.run.path / ONNX_NAME
        self.say(f"exporting ONNX ({exporter}, opset {opset}, batch {self.static or 'dynamic'})")
        export_onnx(self.model, onnx_path, batch=self.static, opset=opset, exporter=exporter)
        parity_info: dict[str, Any] = {}
        if get_runtime("onnxruntime").missing():
            self.report.skipped["onnx parity"] = "onnxruntime not installed"
        else:
            parity_info = self.checked("onnxruntime", onnx_path).to_dict()
        self.record(onnx_path, "onnxruntime", "fp32", opset=opset, exporter=exporter, batch=self.static,
                    parity=parity_info)
        for precision in self.reduced:
            self.skip_reduced("onnxruntime", precision)
        return onnx_path

    def openvino(self, onnx_path: Path) -> None:
        from .runtimes.registry import get_runtime

        if get_runtime("openvino").missing():
            return _skip(self.report, "openvino", "pip install 'edgeaffect[openvino]'", self.explicit)
        table = get_runtime("openvino").artifacts
        xml = self.run.path / table["fp32"]
        self.say(f"converting to OpenVINO IR ({f'static batch {self.static}' if self.static else 'dynamic batch'})")
        export_openvino(onnx_path, xml, batch=self.static, spec=self.model.spec)
        self.record(xml, "openvino", "fp32", batch=self.static, parity=self.checked("openvino", xml).to_dict())
        self.run.record_artifact(xml.with_suffix(".bin"))
        for precision in self.reduced:
            if self.skip_reduced("openvino", precision):
                continue
            path = self.run.path / table[precision]
            if path != xml:  # fp16: an IR with fp16-compressed weights of its own
                export_openvino(onnx_path, path, batch=self.static, fp16=True, spec=self.model.spec)
            self.guarded("openvino", path, precision, shared=path == xml)

    def tensorrt(self, onnx_path: Path, batch: int | None, max_batch: int) -> None:
        from .runtimes.registry import get_runtime

        missing = get_runtime("tensorrt").missing()
        if missing:
            return _skip(self.report, "tensorrt", f"{missing[0]} is not installed (pip install "
                                                  f"'edgeaffect[tensorrt]' on a CUDA machine)", self.explicit)
        for precision in ("fp32", *self.reduced):
            if precision != "fp32" and self.skip_reduced("tensorrt", precision):
                continue
            self.say(f"building TensorRT engine {precision}")
            try:
                engine = build_tensorrt_engine(onnx_path, self.run.path / "tensorrt", fp16=precision == "fp16",
                                               min_batch=1, opt_batch=batch or 1,
                                               max_batch=self.static or max(max_batch, batch or 1),
                                               spec=self.model.spec)
            except EdgeAffectError as exc:
                if precision == "fp32":
                    raise
                self.report.skipped[f"tensorrt-{precision}"] = str(exc)
                continue
            if precision == "fp32":
                self.record(engine, "tensorrt", precision, parity=self.checked("tensorrt", engine).to_dict())
            else:
                self.guarded("tensorrt", engine, precision)

    def skip_reduced(self, runtime_name: str, precision: str) -> bool:
        """Skip (with the reason) a reduced precision this machine does not run on ``runtime_name``."""
        from .precision import unsupported

        reason = unsupported(runtime_name, precision)
        if reason:
            self.report.skipped[f"{runtime_name}-{precision}"] = reason
        return reason is not None

    def guarded(self, runtime_name: str, path: Path, precision: str, shared: bool = False) -> None:
        """Run the guard; an accepted file is recorded, a refused one removed (a shared fp32 file stays)."""
        from .runtimes.registry import load

        self.say(f"accuracy guard {runtime_name} {precision} on {self.guard_samples.source}")
        with load(path, runtime=runtime_name, precision=precision) as rt:
            decision = guard_precision(self.model, rt, self.guard_samples, max_drop=self.max_drop,
                                       batch=self.static or 8)
        decision["artifact"] = os.path.relpath(path, self.run.path)
        self.report.precisions[f"{runtime_name}-{precision}"] = decision
        if decision["accepted"] and not shared:
            self.record(path, runtime_name, precision, batch=self.static, guard=decision["reason"])
            if path.suffix == ".xml":
                self.run.record_artifact(path.with_suffix(".bin"))
        elif decision["accepted"]:
            self.report.artifacts[f"{runtime_name}-{precision}"] = path
        elif not shared:
            for p in (path, path.with_suffix(".bin"), sidecar_path(path)):
                p.unlink(missing_ok=True)


def _skip(report: ExportReport, fmt: str, why: str, explicit: bool) -> None:
    if explicit:
        raise EdgeAffectError(f"cannot export {fmt}: {why}")
    report.skipped[fmt] = why


@contextlib.contextmanager
def _quiet():
    """Silence exporter chatter (progress lines, deprecation warnings) on stdout/stderr."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        log.setLevel(level)
