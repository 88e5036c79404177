"""``quantize_run``: calibrate once, quantize for each runtime, guard the accuracy, record everything.

Artifacts (names bench discovers): ``model.int8.onnx`` (ONNX Runtime),
``openvino/model.int8.xml`` (OpenVINO), ``tensorrt/model.int8.qdq.onnx`` (+ an
engine where TensorRT is installed).  Working files (prepared model, ranges,
every guard attempt) stay in ``quantize/<runtime>/``; the decisions and
numbers go to ``quantize/report.json`` and the ``quantize`` manifest section.
"""
from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import EdgeAffectError, MissingDependencyError
from ..fileio import atomic_path, read_json, write_json, load_checkpoint
from ..runs import Run, load_run
from .config import RUNTIMES, QuantConfig

REPORT = "quantize/report.json"
ARTIFACTS = {"onnxruntime": "model.int8.onnx", "openvino": "openvino/model.int8.xml",
             "tensorrt": "tensorrt/model.int8.qdq.onnx"}
_NEEDS = {"onnxruntime": (("onnxruntime", "onnx"),), "openvino": (("openvino", "openvino"), ("nncf", "openvino")),
          "tensorrt": (("tensorrt", "tensorrt"), ("onnxruntime", "onnx"))}


def installed(runtime: str) -> bool:
    return all(importlib.util.find_spec(pkg) is not None for pkg, _ in _NEEDS[runtime])


def check_runtimes(runtimes: Sequence[str] | None) -> list[str]:
    """Validate requested runtimes (default: every installed one); one clear error otherwise."""
    if not runtimes:
        found = [r for r in RUNTIMES if installed(r)]
        if not found:
            raise MissingDependencyError("onnxruntime", "onnx", "INT8 quantization")
        return found
    for r in runtimes:
        if r not in RUNTIMES:
            raise EdgeAffectError(f"unknown runtime {r!r} for INT8; choose from {', '.join(RUNTIMES)}")
        for pkg, extra in _NEEDS[r]:
            if importlib.util.find_spec(pkg) is None:
                raise MissingDependencyError(pkg, extra, f"INT8 for {r}")
    return list(dict.fromkeys(runtimes))


def open_run(run_dir: str | Path) -> tuple[Run, Any]:
    """Load a run and its model, refusing a checkpoint that does not match the manifest's model."""
    import torch

    from .prune import load_model_any

    run = load_run(run_dir)
    try:
        payload = load_checkpoint(run.checkpoint, map_location="cpu")
    except Exception as exc:
        raise EdgeAffectError(f"cannot read checkpoint {run.checkpoint}: {exc}") from None
    name = payload.get("model") if isinstance(payload, dict) else None
    if name is None:
        raise EdgeAffectError(f"{run.checkpoint} is not an edgeaffect checkpoint")
    if name != run.spec.name:
        raise EdgeAffectError(f"{run.path / 'manifest.json'} describes model {run.spec.name!r} but "
                              f"{run.checkpoint.name} holds {name!r}: the run directory is mixed up")
    return run, load_model_any(run.checkpoint, payload=payload)


def preflight(run_dir: str | Path, config: QuantConfig | None = None, data_root: str | Path | None = None) -> None:
    """Check, before any file is written, that the run opens and its calibration split is large enough."""
    from .calibration import check_split_size, load_split

    cfg = config or QuantConfig()
    run, _ = open_run(run_dir)
    _, data = load_split(run, cfg.calib_split, data_root)
    check_split_size(data, cfg.calib_split)


def fp32_onnx(run: Run, model) -> Path:
    """The FP32 ONNX to quantize: the run's ``model.onnx`` (exported now if ``edgeaffect export`` has not
    run yet), or, when that one has a fixed batch (``export --batch N``), a dynamic-batch export beside the
    quantize files: calibration feeds single samples and the guard scores batches of any size."""
    from ..export import export_onnx

    path = run.path / "model.onnx"
    if not path.exists():
        export_onnx(model, path)
        run.record_artifact(path, runtime="onnxruntime", precision="fp32")
    if _static_batch(path):
        dynamic = run.path / "quantize" / "model.dynamic.onnx"
        dynamic.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, dynamic)
        return dynamic
    return path


def _static_batch(onnx_path: Path) -> bool:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    dims = [i.type.tensor_type.shape.dim[0] for i in graph.input if i.name not in inits and i.type.tensor_type.shape.dim]
    return any(d.HasField("dim_value") for d in dims)


def _install(src: Path, dest: Path) -> None:
    """Copy a chosen attempt to its published name atomically (the .bin before the .xml)."""
    if src.suffix == ".xml":
        _install(src.with_suffix(".bin"), dest.with_suffix(".bin"))
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def quantize_run(run_dir: str | Path, runtimes: Sequence[str] | None = None, config: QuantConfig | None = None, *,
                 data_root: str | Path | None = None, console=None, **overrides: Any) -> dict[str, Any]:
    """Calibrate on the train split and quantize the run's model for each runtime, with the accuracy guard.

    ``config`` gives shared settings (calib_samples, calib_method, max_drop, ...); each runtime starts
    from its own preset with those settings applied.  Returns the report (also in ``quantize/report.json``).
    """
    from ..precision import machine
    from .calibration import load_split, select_calibration
    from .guard import EvalSet

    runtimes = check_runtimes(runtimes)
    shared = _shared_settings(config, overrides)
    configs = {rt: QuantConfig.preset(rt, **shared) for rt in runtimes}
    run, model = open_run(run_dir)
    spec = run.spec
    first = configs[runtimes[0]]
    task, train = load_split(run, first.calib_split, data_root)
    _, val = load_split(run, "val", data_root)
    calib = select_calibration(task, train, spec, first.calib_samples, seed=first.seed, split=first.calib_split)
    evalset = EvalSet.from_dataset(task, val, spec.input_names, first.eval_samples)
    onnx_path = fp32_onnx(run, model)
    report = read_json(run.path / REPORT) if (run.path / REPORT).exists() else {}
    report.update({"model": spec.name, "task": task.name, "metric": task.metric, "metric_scale": task.metric_scale,
                   "calibration": calib.describe(), "eval_samples": len(evalset), "fp32_onnx": str(onnx_path.relative_to(run.path))})
    report.setdefault("runtimes", {})
    for rt in runtimes:
        t0 = time.perf_counter()
        result = _QUANTIZERS[rt](run, onnx_path, calib, evalset, configs[rt], console)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        result["config"] = configs[rt].to_dict()
        result["machine"] = machine()   # INT8 speed and even the guard's verdict depend on the CPU
        report["runtimes"][rt] = result
        write_json(run.path / REPORT, report)
        summary = {k: v for k, v in result.items() if k not in ("sensitivity", "attempts")}
        summary["attempts"] = len(result["attempts"])
        run.update(quantize={rt: summary})
        if result.get("artifact"):
            run.record_artifact(run.path / result["artifact"], stage="quantize", runtime=rt, precision="int8")
    return report


def fill_sensitivity(run_dir: str | Path, *, data_root: str | Path | None = None, console=None) -> dict[str, Any]:
    """Rank the quantized tensors of every published INT8 artifact whose report has no ranking yet.

    The guard ranks only when plain INT8 misses ``--max-drop``; ``quantize report`` calls this so the
    per-layer table is always there.  Uses the same calibration samples (same size, seed, split).
    """
    from . import openvino_int8 as ovq
    from .calibration import load_split, select_calibration
    from .guard import rank_openvino, rank_ort

    path = Path(run_dir) / REPORT
    report = read_json(path)
    todo = [rt for rt, r in report["runtimes"].items() if r.get("artifact") and not r.get("sensitivity")]
    if not todo:
        return report
    run = load_run(run_dir)
    cfg = QuantConfig.preset(todo[0], **{k: v for k, v in report["runtimes"][todo[0]]["config"].items() if k != "runtime"})
    task, train = load_split(run, cfg.calib_split, data_root)
    feeds = select_calibration(task, train, run.spec, cfg.calib_samples, seed=cfg.seed,
                               split=cfg.calib_split).feeds[:cfg.sensitivity_samples]
    onnx_path = run.path / report["fp32_onnx"]
    for rt in todo:
        r = report["runtimes"][rt]
        with _progress(console, f"sensitivity {rt}") as progress:
            progress.add_task("one quantized tensor at a time", total=None)
            if rt == "openvino":
                r["sensitivity"] = rank_openvino(ovq.read_float(onnx_path), run.path / r["artifact"], feeds)
            else:
                work = run.path / "quantize" / rt
                r["sensitivity"] = rank_ort(work / "prepared.onnx", run.path / r["artifact"], feeds, work)
        write_json(path, report)
    return report


def _shared_settings(config: QuantConfig | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Settings the user chose explicitly (differences from the default config) plus overrides."""
    d: dict[str, Any] = {}
    if config is not None:
        default = QuantConfig().to_dict()
        d = {k: v for k, v in config.to_dict().items() if k != "runtime" and v != default[k]}
    d.update(overrides)
    d.pop("runtime", None)
    return d


def _progress(console, label: str):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn(f"[bold]{label}[/] " + "{task.description}"), TimeElapsedColumn(),
                    console=console, transient=True)


def _guarded(rt: str, run: Run, work: Path, evalset, cfg: QuantConfig, console, *, quantize_fn: Callable,
             predict_fn: Callable, rank_fn: Callable, fp32_outputs, dest: Path) -> dict[str, Any]:
    from .guard import agreement, run_guard

    with _progress(console, f"int8 {rt}") as progress:
        bar = progress.add_task("quantize + evaluate", total=None)

        def note(att):
            progress.update(bar, description=f"{len(att['kept_float'])} float layer(s): drop {att['drop_points']:.2f} pts")

        res = run_guard(quantize_fn=quantize_fn, predict_fn=predict_fn, rank_fn=rank_fn, evalset=evalset,
                        fp32_outputs=fp32_outputs, max_drop=cfg.max_drop, max_float_layers=cfg.max_float_layers,
                        keep_float=cfg.keep_float, enabled=cfg.guard, on_attempt=note)
    out = res.to_dict()
    out["fp32_top1"] = agreement(fp32_outputs, fp32_outputs)["top1_agreement"]
    if res.passed or not cfg.guard:
        _install(Path(res.artifact), dest)
        out["artifact"] = str(dest.relative_to(run.path))
    else:
        out["artifact"] = None
        out["best_attempt"] = str(Path(res.artifact).relative_to(run.path))
    return out


def _onnxruntime(run: Run, onnx_path: Path, calib, evalset, cfg: QuantConfig, console, *, rt: str = "onnxruntime",
                 dest_name: str | None = None) -> dict[str, Any]:
    from . import onnxruntime_int8 as oq
    from .guard import ort_infer, rank_ort

    work = run.path / "quantize" / rt
    work.mkdir(parents=True, exist_ok=True)
    prepared = oq.prepare(onnx_path, work / "prepared.onnx")
    ranges = oq.calibrate(prepared, calib, cfg, work / f"ranges.{cfg.calib_method}.json")
    counter = iter(range(1000))

    def quantize_fn(kept):
        return oq.quantize(prepared, ranges, work / f"attempt-{next(counter)}.onnx", cfg, kept)

    def rank_fn(artifact):
        return rank_ort(prepared, artifact, calib.feeds[:cfg.sensitivity_samples], work)

    fp32_outputs = evalset.predict(ort_infer(onnx_path))
    out = _guarded(rt, run, work, evalset, cfg, console, quantize_fn=quantize_fn,
                   predict_fn=lambda p: evalset.predict(ort_infer(p)), rank_fn=rank_fn, fp32_outputs=fp32_outputs,
                   dest=run.path / (dest_name or ARTIFACTS[rt]))
    out["ranges"] = str(ranges.relative_to(run.path))
    return out


def _openvino(run: Run, onnx_path: Path, calib, evalset, cfg: QuantConfig, console) -> dict[str, Any]:
    from . import openvino_int8 as ovq
    from .guard import ov_infer, rank_openvino

    work = run.path / "quantize" / "openvino"
    work.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1000))

    def quantize_fn(kept):
        i = next(counter)
        return ovq.quantize(onnx_path, calib, cfg, work / f"attempt-{i}" / "model.int8.xml", kept, spec=run.spec)

    def rank_fn(artifact):
        return rank_openvino(ovq.read_float(onnx_path), artifact, calib.feeds[:cfg.sensitivity_samples])

    fp32_outputs = evalset.predict(ov_infer(ovq.read_float(onnx_path)))
    return _guarded("openvino", run, work, evalset, cfg, console, quantize_fn=quantize_fn,
                    predict_fn=lambda p: evalset.predict(ov_infer(p, precision="int8")), rank_fn=rank_fn,
                    fp32_outputs=fp32_outputs, dest=run.path / ARTIFACTS["openvino"])


def _tensorrt(run: Run, onnx_path: Path, calib, evalset, cfg: QuantConfig, console) -> dict[str, Any]:
    """TensorRT-ready QDQ ONNX (guarded with ONNX Runtime's QDQ simulation), then the INT8 engine."""
    from . import tensorrt_int8

    out = _onnxruntime(run, onnx_path, calib, evalset, cfg, console, rt="tensorrt")
    if out.get("artifact"):
        engine = tensorrt_int8.build_explicit(run.path / out["artifact"], run.path / "tensorrt", spec=run.spec)
        out["engine"] = str(engine.relative_to(run.path))
    return out


_QUANTIZERS = {"onnxruntime": _onnxruntime, "openvino": _openvino, "tensorrt": _tensorrt}
