"""``edgeaffect export``: a trained run -> ONNX, OpenVINO IR, TensorRT engine (delegates to export.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EdgeAffectError
from ..precision import REDUCED_FLOAT, check_precisions
from ..quantize.config import DEFAULT_CALIB_SAMPLES, QuantConfig
from ..quantize.prune import PruneConfig
from . import app
from .common import NoVerifyOpt, RunArg, SignOpt, console, say_next, split_csv
from .quantize import print_int8, print_pruning

RuntimeOpt = Annotated[Optional[str], typer.Option(
    "--runtime", "-r", "--format", "-f",
    help="Comma-separated runtimes to export for: onnxruntime,openvino,tensorrt (default: every one installed; "
         "their formats onnx,openvino,tensorrt name them too, and --format is the same option). model.onnx is "
         "always written: the others are built from it. With --int8: also the runtimes INT8 is made for.")]
BatchOpt = Annotated[Optional[int], typer.Option(
    "--batch", min=1, help="Fix the batch size (static shapes; faster on CPU). With --dynamic: the optimisation batch.")]
DynamicOpt = Annotated[bool, typer.Option("--dynamic", help="Keep a dynamic batch even when --batch is given.")]
Fp16Opt = Annotated[bool, typer.Option("--fp16", help="Short for --precision fp16.")]
PrecisionOpt = Annotated[Optional[str], typer.Option(
    "--precision", "-p", help="Also bf16 and/or fp16 (comma-separated), for every format whose runtime runs it on this "
                              "machine (OpenVINO bf16/fp16 where the CPU lists them, TensorRT fp16), each accepted "
                              "only within --max-drop of FP32; others are skipped with the reason.")]

Int8Opt = Annotated[bool, typer.Option("--int8", help="Also calibrate on the train split and write INT8 models (model.int8.onnx, "
                                                      "openvino/model.int8.xml, TensorRT QDQ) with the accuracy guard.")]
TrtCalibrationOpt = Annotated[str, typer.Option("--trt-calibration", help="With --int8 on TensorRT: explicit (Q/DQ, the "
                                                "default) or implicit (TensorRT's own calibrator, 8.6/10 only).")]
PruneOpt = Annotated[Optional[float], typer.Option("--prune", help="Prune this fraction of channels (0, 0.9], fine-tune, and "
                                                                   "export <run>/pruned-<ratio>/ instead of the run.")]


@app.command("export")
def export_cmd(
    run: RunArg,
    runtime: RuntimeOpt = None,
    batch: BatchOpt = None,
    dynamic: DynamicOpt = False,
    fp16: Fp16Opt = False,
    precision: PrecisionOpt = None,
    opset: Annotated[int, typer.Option("--opset", min=13, help="ONNX opset.")] = 18,
    exporter: Annotated[str, typer.Option("--exporter", help="torch.onnx exporter: dynamo or legacy.")] = "dynamo",
    tolerance: Annotated[float, typer.Option("--tolerance", help="Max abs difference from torch allowed (FP32).")] = 1e-3,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset for the parity check (default: the run's).")] = None,
    int8: Int8Opt = False,
    calib_samples: Annotated[int, typer.Option("--calib-samples", help="With --int8: calibration samples, stratified across labels.")] = DEFAULT_CALIB_SAMPLES,
    calib_method: Annotated[str, typer.Option("--calib-method", help="With --int8: minmax | entropy | percentile.")] = "minmax",
    trt_calibration: TrtCalibrationOpt = "explicit",
    max_drop: Annotated[float, typer.Option("--max-drop", help="With --int8/--precision: allowed metric drop vs FP32, in points of the task metric.")] = 1.0,
    prune: PruneOpt = None,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="With --prune: fine-tuning epochs.")] = 5,
    importance: Annotated[str, typer.Option("--importance", help="With --prune: magnitude | taylor.")] = "magnitude",
    no_verify: NoVerifyOpt = False,
    sign: SignOpt = None,
) -> None:
    """Export a trained run: model.onnx (spec in its metadata), openvino/model.xml, tensorrt/<gpu>-trt<ver>.engine.

    Every artifact is checked against torch on real validation samples (max abs diff and the
    task metric are reported; beyond --tolerance the export fails) and listed with its hash in
    manifest.json.

    --int8 adds calibrated INT8 models per runtime (see `edgeaffect quantize report`);
    --prune writes a pruned, fine-tuned run in <run>/pruned-<ratio>/ and exports that.

    Example:  edgeaffect export runs/eri/exp1 --runtime onnxruntime,openvino --batch 1 --dynamic
    Example:  edgeaffect export runs/eri/exp1 --precision bf16,fp16 --max-drop 0.5
    Example:  edgeaffect export runs/eri/exp1 --prune 0.4 --finetune-epochs 5 --int8 --runtime onnxruntime,openvino
    Example:  edgeaffect export runs/eri/exp1 --int8 --sign keys/edgeaffect-signing.key   (docs/signing.md)
    """
    from rich.markup import escape

    from ..export import export_run
    from ..signing import sign as sign_folder

    reduced = _check_options(precision, sign, int8, calib_samples, calib_method, trt_calibration, max_drop)
    cfg = QuantConfig(calib_samples=calib_samples, calib_method=calib_method, max_drop=max_drop,
                      trt_calibration=trt_calibration) if int8 else None
    with console.status("exporting") as status:
        report = export_run(run, split_csv(runtime) or None, precisions=reduced, int8=cfg,
                            prune=PruneConfig(prune, importance, finetune_epochs) if prune is not None else None,
                            batch=batch, dynamic=dynamic, fp16=fp16, max_drop=max_drop, opset=opset, exporter=exporter,
                            tolerance=tolerance, data=data, explicit=runtime is not None, verify=not no_verify,
                            console=console,
                            progress=lambda msg: (status.update(escape(msg)), console.print(f"[dim]{escape(msg)}[/]")))
    _print_all(report, pruned=prune is not None)
    if report.unmet(reduced):   # asked for by name: a script must not go on as if it were there (fp32 files are kept)
        raise EdgeAffectError(f"no {' or '.join(report.unmet(reduced))} artifact was written on any runtime (the "
                              "reasons are above); the fp32 files are written")
    if sign is not None:
        console.print(f"signed: {sign_folder(report.run, sign)}", highlight=False)
    say_next(f"edgeaffect bench {report.run}   (or: edgeaffect eval {report.run})")   # eval picks the split that exists


def _check_options(precision, sign, int8: bool, calib_samples: int, calib_method: str, trt_calibration: str,
                   max_drop: float) -> list[str]:
    """The reduced floats asked for; one line for options that do not go together or a bad signing key."""
    reduced = check_precisions(split_csv(precision))
    if sign is not None:   # a bad key is said before minutes of export
        from ..signing import check_key

        check_key(sign)
    if any(p not in REDUCED_FLOAT for p in reduced):
        raise EdgeAffectError(f"--precision takes {', '.join(REDUCED_FLOAT)} (fp32 is always written; INT8 is --int8), "
                              f"got {precision!r}")
    if not int8 and (calib_samples != DEFAULT_CALIB_SAMPLES or calib_method != "minmax" or trt_calibration != "explicit"
                     or (max_drop != 1.0 and not reduced)):
        raise EdgeAffectError("--calib-samples, --calib-method and --trt-calibration go with --int8; "
                              "--max-drop with --int8 or --precision")
    return reduced


def _print_all(report, pruned: bool) -> None:
    """The pruning line, the export's parity and artifacts, and the INT8 table, of the steps that ran."""
    if pruned:
        print_pruning(report.run)
    print_export_report(report)
    if report.int8 is not None:
        print_int8(report.int8)


def print_export_report(report) -> None:
    """Parity per artifact, where each was written, and what was skipped and why."""
    from rich.markup import escape

    for p in report.parity:
        # the count beside the metric: parity scores a sample of the split, bench and the guard all of it
        metric = "" if p.metric is None else f", {p.metric_name} {p.metric:.4f} (torch {p.metric_torch:.4f}) on {p.n} samples"
        if p.metric is not None and abs(p.metric - p.metric_torch) > 1e-3 and p.max_abs_diff < 1e-5:
            metric += " (the outputs match; the metric moves with float noise: the model's scores are nearly tied)"
        console.print(f"[green]ok[/] {p.runtime}-{p.precision:<5} max|diff| {p.max_abs_diff:.2e}, "
                      f"agreement {p.agreement:.3f}{metric}", highlight=False)
    for name, path in report.artifacts.items():
        console.print(f"  {name:<18} {escape(str(path))}", highlight=False)
    for name, d in report.precisions.items():
        verdict = "[green]accepted[/]" if d["accepted"] else "[red]refused[/]"
        console.print(f"{verdict} {name} (ran as {d['executed_precision']}): {escape(d['reason'])}", highlight=False)
    for fmt, why in report.skipped.items():
        console.print(f"[yellow]skipped {fmt}[/]: {escape(why)}", highlight=False)

