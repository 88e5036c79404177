"""``quantize_run``: calibrate once, quantize for each runtime, guard the accuracy, record everything.

Artifacts (names bench discovers): ``model.int8.onnx`` (ONNX Runtime),
``openvino/model.int8.xml`` (OpenVINO), ``tensorrt/model.int8.qdq.onnx`` (+ an
engine where TensorRT is installed).  Working files (prepared model, ranges,
every guard attempt) stay in ``quantize/<runtime>/``; the decisions and
numbers go to ``quantize/report.json`` and the ``quantize`` manifest section.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import EdgeAffectError, MissingDependencyError
from ..fileio import atomic_path, read_json, write_json
from ..macs import onnx_node_macs
from ..runs import Run, load_run, open_run
from .config import QuantConfig

REPORT = "quantize/report.json"


def published(runtime: str) -> str:
    """Where a runtime's INT8 artifact is published in a run (the runtime table's name for it)."""
    from ..runtimes.registry import get_runtime

    entry = get_runtime(runtime)
    return entry.quantized or entry.artifacts["int8"]


def check_runtimes(runtimes: Sequence[str] | None) -> list[str]:
    """Validate requested runtimes (default: every one whose quantizer is installed); one clear error otherwise."""
    from ..runtimes.registry import get_runtime, quantizable

    if not runtimes:
        found = [r for r in quantizable() if not get_runtime(r).quantizer_missing()]
        if not found:
            raise MissingDependencyError("onnxruntime", "onnxruntime", "INT8 quantization")
        return found
    for r in runtimes:
        if r not in quantizable():
            raise EdgeAffectError(f"unknown runtime {r!r} for INT8; choose from {', '.join(quantizable())}")
        for pkg, extra in get_runtime(r).quantizer_missing()[:1]:
            raise MissingDependencyError(pkg, extra, f"INT8 for {r}")
    return list(dict.fromkeys(runtimes))


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
                 data_root: str | Path | None = None, console=None, verify: bool = True,
                 **overrides: Any) -> dict[str, Any]:
    """Calibrate on the train split and quantize the run's model for each runtime, with the accuracy guard.

    ``config`` gives shared settings (calib_samples, calib_method, max_drop, ...); each runtime starts
    from its own preset with those settings applied.  Returns the report (also in ``quantize/report.json``).
    """
    from ..runs import writer_lock

    runtimes = check_runtimes(runtimes)
    shared = _shared_settings(config, overrides)
    configs = {rt: QuantConfig.preset(rt, **shared) for rt in runtimes}
    with writer_lock(run_dir, "edgeaffect quantize"):
        return _quantize_locked(run_dir, runtimes, configs, data_root, console, verify)


def _quantize_locked(run_dir, runtimes: list[str], configs: dict[str, QuantConfig], data_root, console,
                     verify: bool) -> dict[str, Any]:
    from ..evaluate import from_dataset
    from ..precision import machine
    from ..runtimes.registry import artifact_files, get_runtime
    from .calibration import load_split, select_calibration

    run, model = open_run(run_dir)
    if verify:   # the files INT8 starts from are the ones the manifest lists
        run.verify(run.checkpoint, *([run.path / "model.onnx"] if (run.path / "model.onnx").exists() else []))
    spec = run.spec
    first = configs[runtimes[0]]
    task, train = load_split(run, first.calib_split, data_root)
    _, val = load_split(run, "val", data_root)
    calib = select_calibration(task, train, spec, first.calib_samples, seed=first.seed, split=first.calib_split)
    samples = from_dataset(val, spec, "val", str(run.data_dir), first.eval_samples or None)
    onnx_path = fp32_onnx(run, model)
    report = read_json(run.path / REPORT) if (run.path / REPORT).exists() else {}
    report.update({"model": spec.name, "task": task.name, "metric": task.metric, "metric_scale": task.metric_scale,
                   "calibration": calib.describe(), "eval_samples": len(samples), "eval_on": samples.source, "fp32_onnx": str(onnx_path.relative_to(run.path))})
    report.setdefault("runtimes", {})
    for rt in runtimes:
        t0 = time.perf_counter()
        result = get_runtime(rt).quantize_fn()(run, onnx_path, calib, samples, configs[rt], console)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        result["config"] = configs[rt].to_dict()
        result["machine"] = machine()   # INT8 speed and even the guard's verdict depend on the CPU
        report["runtimes"][rt] = result
        write_json(run.path / REPORT, report)
        summary = {k: v for k, v in result.items() if k not in ("sensitivity", "attempts")}
        summary["attempts"] = len(result["attempts"])
        run.update(quantize={rt: summary})
        for key in ("artifact", "engine"):   # the INT8 file (its IR .bin too) and a TensorRT engine built from it
            if result.get(key) and (key == "artifact" or result[key] != result.get("artifact")):
                path = run.path / result[key]
                run.record_artifact(path, *artifact_files(path)[1:], stage="quantize", runtime=rt, precision="int8")
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


COVERAGE_WARN = 0.9
"""An accepted INT8 artifact with less of its MACs than this in int8 is said so: its float islands cost time."""


def _guarded(rt: str, run: Run, samples, cfg: QuantConfig, console, *, quantize_fn: Callable,
             open_fn: Callable, rank_fn: Callable, fp32_outputs, dest: Path,
             layer_macs: dict[str, int] | None = None) -> dict[str, Any]:
    from .guard import run_guard

    def predict_fn(path):
        return _scored(open_fn(path), samples)

    with _progress(console, f"int8 {rt}") as progress:
        bar = progress.add_task("quantize + evaluate", total=None)

        def note(att):
            progress.update(bar, description=f"{len(att['kept_float'])} float layer(s): drop {att['drop_points']:.2f} pts")

        res = run_guard(quantize_fn=quantize_fn, predict_fn=predict_fn, rank_fn=rank_fn, samples=samples, spec=run.spec,
                        layer_macs=layer_macs,
                        fp32_outputs=fp32_outputs, max_drop=cfg.max_drop, max_float_layers=cfg.max_float_layers,
                        keep_float=cfg.keep_float, enabled=cfg.guard, on_attempt=note)
    out = res.to_dict()
    if res.passed or not cfg.guard:
        _install(Path(res.artifact), dest)
        out["artifact"] = str(dest.relative_to(run.path))
        out.update(_coverage(open_fn, dest))
    else:
        out["artifact"] = None
        out["best_attempt"] = str(Path(res.artifact).relative_to(run.path))
    return out


def _coverage(open_fn: Callable, artifact: Path) -> dict[str, Any]:
    """What of the accepted artifact runs in int8, read back from the graph the runtime compiled, and a
    caveat line when float islands hold more than a tenth of its MACs."""
    with open_fn(artifact) as rt:
        cov = rt.int8_coverage()
    if cov is None:
        return {}
    out: dict[str, Any] = {"int8_coverage": cov}
    if cov["macs"] < COVERAGE_WARN:
        out["coverage_caveat"] = (f"only {cov['macs']:.0%} of the MACs ({cov['layers']:.0%} of the compute layers) "
                                  f"run in int8; {cov['float_layers']} layer(s) stay float and cost time")
    return out


def _scored(runtime, samples) -> dict:
    """Outputs of an opened runtime on the guard's samples, in the batch every stage scores in
    (``evaluate.scoring_batch``), closing it after."""
    from ..evaluate import predict, scoring_batch

    with runtime as rt:
        return predict(rt, samples, batch=scoring_batch(rt))


def quantize_onnxruntime(run: Run, onnx_path: Path, calib, samples, cfg: QuantConfig, console, *,
                         rt: str = "onnxruntime") -> dict[str, Any]:
    """QDQ INT8 for ONNX Runtime's CPU provider, calibrated on ``calib``, guarded on ``samples``."""
    from . import onnxruntime_int8 as oq
    from .guard import ort_runtime, rank_ort

    work = run.path / "quantize" / rt
    work.mkdir(parents=True, exist_ok=True)
    prepared = oq.prepare(onnx_path, work / "prepared.onnx")
    ranges = oq.calibrate(prepared, calib, cfg, work / f"ranges.{cfg.calib_method}.json")
    counter = iter(range(1000))

    def quantize_fn(kept):
        return oq.quantize(prepared, ranges, work / f"attempt-{next(counter)}.onnx", cfg, kept)

    def rank_fn(artifact):
        return rank_ort(prepared, artifact, calib.feeds[:cfg.sensitivity_samples], work)

    out = _guarded(rt, run, samples, cfg, console, quantize_fn=quantize_fn, open_fn=ort_runtime, rank_fn=rank_fn,
                   layer_macs=onnx_node_macs(onnx_path),
                   fp32_outputs=_scored(ort_runtime(onnx_path), samples), dest=run.path / published(rt))
    out["ranges"] = str(ranges.relative_to(run.path))
    return out


def quantize_openvino(run: Run, onnx_path: Path, calib, samples, cfg: QuantConfig, console) -> dict[str, Any]:
    """NNCF post-training INT8 for OpenVINO, guarded on ``samples`` as bench runs it."""
    from . import openvino_int8 as ovq
    from .guard import SCORED_BATCH, ov_runtime, rank_openvino

    work = run.path / "quantize" / "openvino"
    work.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1000))

    def quantize_fn(kept):
        i = next(counter)
        return ovq.quantize(onnx_path, calib, cfg, work / f"attempt-{i}" / "model.int8.xml", kept, spec=run.spec)

    def rank_fn(artifact):
        return rank_openvino(ovq.read_float(onnx_path), artifact, calib.feeds[:cfg.sensitivity_samples])

    return _guarded("openvino", run, samples, cfg, console, quantize_fn=quantize_fn,
                    open_fn=lambda p: ov_runtime(p, precision="int8", batch=SCORED_BATCH), rank_fn=rank_fn,
                    layer_macs=onnx_node_macs(onnx_path),
                    # the fp32 reference compiled as the int8 candidate, eval and bench compile it (static batch):
                    # a dynamic compile picks other kernels and, on a small split, another metric for one IR
                    fp32_outputs=_scored(ov_runtime(ovq.read_float(onnx_path), batch=SCORED_BATCH), samples),
                    dest=run.path / published("openvino"))


def quantize_tensorrt(run: Run, onnx_path: Path, calib, samples, cfg: QuantConfig, console) -> dict[str, Any]:
    """TensorRT-ready QDQ ONNX (guarded with ONNX Runtime's QDQ simulation), then the INT8 engine;
    or, with ``trt_calibration="implicit"``, an engine TensorRT calibrates itself (scored on ``samples``)."""
    from . import tensorrt_int8

    if cfg.trt_calibration == "implicit":
        return _tensorrt_implicit(run, onnx_path, calib, samples, cfg)
    out = quantize_onnxruntime(run, onnx_path, calib, samples, cfg, console, rt="tensorrt")
    if out.get("artifact"):
        engine = tensorrt_int8.build_explicit(run.path / out["artifact"], run.path / "tensorrt", spec=run.spec)
        out["engine"] = str(engine.relative_to(run.path))
    return out


def _tensorrt_implicit(run: Run, onnx_path: Path, calib, samples, cfg: QuantConfig) -> dict[str, Any]:
    """TensorRT's entropy calibrator on ``calib`` (cache reused for the same data), the engine scored against
    FP32 on ``samples``.  No layer can be kept in float here: a drop beyond ``max_drop`` removes the engine."""
    from ..evaluate import compare, drop_points, score
    from ..runtimes.registry import load
    from .guard import ort_runtime
    from .tensorrt_int8 import build_implicit

    engine, cache_hit = build_implicit(onnx_path, run.path / "tensorrt", calib, spec=run.spec)
    fp32_outputs = _scored(ort_runtime(onnx_path), samples)
    outs = _scored(load(engine, runtime="tensorrt", precision="int8"), samples)
    fp32, int8 = score(run.spec, fp32_outputs, samples.target), score(run.spec, outs, samples.target)
    drop = drop_points(run.spec, fp32, int8)
    passed = drop <= cfg.max_drop or not cfg.guard
    if not passed:
        engine.unlink(missing_ok=True)
    attempt = {"kept_float": [], "metric": int8, "drop_points": drop, **compare(run.spec, fp32_outputs, outs)}
    message = (f"implicit INT8 drop {drop:.2f} point(s) " + ("within" if drop <= cfg.max_drop else "exceeds")
               + f" {cfg.max_drop:g}" + ("" if passed else "; use the explicit calibration (the default)"))
    return {"passed": passed, "fp32_metric": fp32, "int8_metric": int8, "drop_points": drop, "max_drop": cfg.max_drop,
            "kept_float": [], "agreement": {k: attempt[k] for k in ("kind", "agreement", "max_abs_diff") if k in attempt},
            "attempts": [attempt], "message": message, "sensitivity": [], "calibration_cache_hit": cache_hit,
            "artifact": str(engine.relative_to(run.path)) if passed else None,
            "engine": str(engine.relative_to(run.path)) if passed else None}
