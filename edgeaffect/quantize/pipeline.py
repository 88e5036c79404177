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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import EdgeAffectError, MissingDependencyError
from ..evaluate import SCORED_BATCH, compare, drop_points, from_dataset, predict, score, scoring_batch
from ..fileio import atomic_path, read_json, write_json
from ..lazy import lazy_import
from ..precision import machine
from ..runs import Run, load_run, open_run, writer_lock
from ..runtimes.onnxfile import export_onnx
from ..runtimes.registry import artifact_files, get_runtime, onnx_runtime, quantizable
from .calibration import check_split_size, load_split, select_calibration
from .config import QuantConfig
from .guard import run_guard

onnx = lazy_import("onnx", "train")

REPORT = "quantize/report.json"


def published(runtime: str) -> str:
    """Where a runtime's INT8 artifact is published in a run (the runtime table's name for it)."""
    entry = get_runtime(runtime)
    return entry.quantized or entry.artifacts["int8"]


def check_runtimes(runtimes: Sequence[str] | None) -> list[str]:
    """Validate requested runtimes (default: every one whose quantizer is installed); one clear error otherwise."""
    if not runtimes:
        found = [r for r in quantizable() if not get_runtime(r).quantizer_missing()]
        if not found:
            first = get_runtime(onnx_runtime())
            raise MissingDependencyError(first.packages[0], first.extra, "INT8 quantization")
        return found
    for r in runtimes:
        if r not in quantizable():
            raise EdgeAffectError(f"unknown runtime {r!r} for INT8; choose from {', '.join(quantizable())}")
        for pkg, extra in get_runtime(r).quantizer_missing()[:1]:
            raise MissingDependencyError(pkg, extra, f"INT8 for {r}")
    return list(dict.fromkeys(runtimes))


def preflight(run_dir: str | Path, config: QuantConfig | None = None, data_root: str | Path | None = None) -> None:
    """Check, before any file is written, that the run opens and its calibration split is large enough."""
    cfg = config or QuantConfig()
    run, _ = open_run(run_dir)
    _, data = load_split(run, cfg.calib_split, data_root)
    check_split_size(data, cfg.calib_split)


def fp32_onnx(run: Run, model) -> Path:
    """The FP32 ONNX to quantize: the run's ``model.onnx`` (exported now if ``edgeaffect export`` has not
    run yet), or, when that one has a fixed batch (``export --batch N``), a dynamic-batch export beside the
    quantize files: calibration feeds single samples and the guard scores batches of any size."""
    path = run.path / "model.onnx"
    if not path.exists():
        export_onnx(model, path)
        run.record_artifact(path, runtime=onnx_runtime(), precision="fp32")
    if _static_batch(path):
        dynamic = run.path / "quantize" / "model.dynamic.onnx"
        dynamic.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, dynamic)
        return dynamic
    return path


def _static_batch(onnx_path: Path) -> bool:
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
    runtimes = check_runtimes(runtimes)
    shared = _shared_settings(config, overrides)
    configs = {rt: QuantConfig.preset(rt, **shared) for rt in runtimes}
    with writer_lock(run_dir, "edgeaffect quantize"):
        return _quantize_locked(run_dir, runtimes, configs, data_root, console, verify)


def _quantize_locked(run_dir, runtimes: list[str], configs: dict[str, QuantConfig], data_root, console,
                     verify: bool) -> dict[str, Any]:
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
        result = get_runtime(rt).quantize_fn()(Int8Job(rt, run, onnx_path, calib, samples, configs[rt], console))
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
            r["sensitivity"] = get_runtime(rt).rank_fn()(run.path / "quantize" / rt, run.path / r["artifact"], onnx_path, feeds)
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


@dataclass
class Int8Job:
    """One runtime's INT8 run, handed to that runtime's quantizer (``edgeaffect/runtimes/<name>/int8.py``):
    what it quantizes and is scored on, where it works and publishes, and the accuracy guard it goes through.
    The runtime says how to quantize, open and rank; the guard and the scoring stay here."""

    runtime: str
    run: Run
    onnx_path: Path
    calib: Any
    samples: Any
    cfg: QuantConfig
    console: Any = None
    scored_batch: int = SCORED_BATCH

    @property
    def work(self) -> Path:
        """Working files (every attempt, the ranges): ``quantize/<runtime>/``."""
        path = self.run.path / "quantize" / self.runtime
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def dest(self) -> Path:
        return self.run.path / published(self.runtime)

    def scored(self, runtime) -> dict:
        """Outputs of an opened runtime on the guard's samples (closed after)."""
        return _scored(runtime, self.samples)

    def judge(self, fp32_outputs, outputs) -> dict[str, Any]:
        """One attempt scored against FP32 without the guard's ladder (nothing can be kept float)."""
        fp32, int8 = score(self.run.spec, fp32_outputs, self.samples.target), score(self.run.spec, outputs, self.samples.target)
        return {"kept_float": [], "metric": int8, "drop_points": drop_points(self.run.spec, fp32, int8),
                "metric_fp32": fp32, **compare(self.run.spec, fp32_outputs, outputs)}

    def guarded(self, *, quantize_fn: Callable, open_fn: Callable, rank_fn: Callable, fp32_outputs,
                layer_macs: dict[str, int] | None = None) -> dict[str, Any]:
        """The guard over ``quantize_fn``'s attempts; the accepted one published at :attr:`dest`."""
        cfg = self.cfg
        with _progress(self.console, f"int8 {self.runtime}") as progress:
            bar = progress.add_task("quantize + evaluate", total=None)

            def note(att):
                progress.update(bar, description=f"{len(att['kept_float'])} float layer(s): drop {att['drop_points']:.2f} pts")

            res = run_guard(quantize_fn=quantize_fn, predict_fn=lambda path: _scored(open_fn(path), self.samples),
                            rank_fn=rank_fn, samples=self.samples, spec=self.run.spec, layer_macs=layer_macs,
                            fp32_outputs=fp32_outputs, max_drop=cfg.max_drop, max_float_layers=cfg.max_float_layers,
                            keep_float=cfg.keep_float, enabled=cfg.guard, on_attempt=note)
        out = res.to_dict()
        if res.passed or not cfg.guard:
            _install(Path(res.artifact), self.dest)
            out["artifact"] = str(self.dest.relative_to(self.run.path))
            out.update(_coverage(open_fn, self.dest))
        else:
            out["artifact"] = None
            out["best_attempt"] = str(Path(res.artifact).relative_to(self.run.path))
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
    with runtime as rt:
        return predict(rt, samples, batch=scoring_batch(rt))
