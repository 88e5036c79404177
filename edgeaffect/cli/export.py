"""``edgeaffect export``: a trained run -> ONNX, OpenVINO IR, TensorRT engine (delegates to export.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from .common import RunArg, console, split_csv

FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", "-f", help="Comma-separated: onnx,openvino,tensorrt (default: all whose runtime is installed). "
                           "model.onnx is always written: the other formats are built from it.")]
BatchOpt = Annotated[Optional[int], typer.Option(
    "--batch", min=1, help="Fix the batch size (static shapes; faster on CPU). With --dynamic: the optimisation batch.")]
DynamicOpt = Annotated[bool, typer.Option("--dynamic", help="Keep a dynamic batch even when --batch is given.")]
Fp16Opt = Annotated[bool, typer.Option("--fp16", help="Also write FP16 variants (openvino/model.fp16.xml, TensorRT FP16).")]


@app.command("export")
def export_cmd(
    run: RunArg,
    formats: FormatOpt = None,
    batch: BatchOpt = None,
    dynamic: DynamicOpt = False,
    fp16: Fp16Opt = False,
    opset: Annotated[int, typer.Option("--opset", min=13, help="ONNX opset.")] = 18,
    exporter: Annotated[str, typer.Option("--exporter", help="torch.onnx exporter: dynamo or legacy.")] = "dynamo",
    tolerance: Annotated[float, typer.Option("--tolerance", help="Max abs difference from torch allowed (FP32).")] = 1e-3,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset for the parity check (default: the run's).")] = None,
) -> None:
    """Export a trained run: model.onnx (spec in its metadata), openvino/model.xml, tensorrt/<gpu>-trt<ver>.engine.

    Every artifact is checked against torch on real validation samples (max abs diff and the
    task metric are reported; beyond --tolerance the export fails) and listed with its hash in
    manifest.json.

    Example:  edgeaffect export runs/eri/exp1 --format onnx,openvino --batch 1 --dynamic
    """
    from rich.markup import escape

    from ..export import FORMATS, export_run

    chosen = split_csv(formats) or list(FORMATS)
    with console.status("exporting") as status:
        report = export_run(run, chosen, batch=batch, dynamic=dynamic, fp16=fp16, opset=opset, exporter=exporter,
                            tolerance=tolerance, data=data, explicit=formats is not None,
                            progress=lambda msg: (status.update(escape(msg)), console.print(f"[dim]{escape(msg)}[/]")))
    for p in report.parity:
        metric = "" if p.metric is None else f", {p.metric_name} {p.metric:.4f} (torch {p.metric_torch:.4f})"
        console.print(f"[green]ok[/] {p.runtime}-{p.precision:<5} max|diff| {p.max_abs_diff:.2e}, "
                      f"agreement {p.agreement:.3f}{metric}", highlight=False)
    for name, path in report.artifacts.items():
        console.print(f"  {name:<18} {escape(str(path))}", highlight=False)
    for fmt, why in report.skipped.items():
        console.print(f"[yellow]skipped {fmt}[/]: {escape(why)}", highlight=False)
