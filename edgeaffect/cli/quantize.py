"""``edgeaffect quantize``: INT8 with an accuracy guard, structured pruning, and the report of both."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EdgeAffectError
from ..fileio import read_json
from ..quantize.config import DEFAULT_CALIB_SAMPLES, QuantConfig
from ..quantize.prune import check_ratio, prune_run
from . import app
from .common import NoVerifyOpt, RunArg, console, split_csv, table_console
from .common import console as con

quantize_app = typer.Typer(help="INT8 calibration per runtime with an accuracy guard, and structured pruning.",
                           no_args_is_help=True)
app.add_typer(quantize_app, name="quantize")

RuntimeOpt = Annotated[Optional[str], typer.Option("--runtime", "-r", help="Comma-separated: onnxruntime, openvino, tensorrt (default: every installed one).")]
CalibSamplesOpt = Annotated[int, typer.Option("--calib-samples", help="Calibration samples from the train split, stratified across labels.")]
CalibMethodOpt = Annotated[str, typer.Option("--calib-method", help="minmax | entropy | percentile.")]
MaxDropOpt = Annotated[float, typer.Option("--max-drop", help="Allowed metric drop vs FP32, in points of the task metric.")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset root (default: the one the run was trained on).")]
TrtCalibrationOpt = Annotated[str, typer.Option("--trt-calibration", help="TensorRT INT8: explicit (Q/DQ ONNX, guarded layer by "
                                                                         "layer; TensorRT 10 and 11) or implicit (TensorRT's entropy "
                                                                         "calibrator on the device, TensorRT 8.6/10 such as JetPack 6; scored, no float fallback).")]


@quantize_app.command("int8")
def int8(run: RunArg, runtime: RuntimeOpt = None, calib_samples: CalibSamplesOpt = DEFAULT_CALIB_SAMPLES,
         calib_method: CalibMethodOpt = "minmax", max_drop: MaxDropOpt = 1.0,
         no_guard: Annotated[bool, typer.Option("--no-guard", help="Write plain INT8 even if it loses more than --max-drop.")] = False,
         trt_calibration: TrtCalibrationOpt = "explicit",
         data: DataRootOpt = None, no_verify: NoVerifyOpt = False) -> None:
    """Calibrate on real train samples and write INT8 models, keeping sensitive layers in float if needed.

    Example:  edgeaffect quantize int8 runs/eri/<run> --runtime onnxruntime,openvino --calib-samples 64
    Example:  edgeaffect quantize int8 runs/eri/<run> --runtime tensorrt --trt-calibration implicit   (on a Jetson)
    """
    from ..quantize.pipeline import quantize_run

    cfg = QuantConfig(calib_samples=calib_samples, calib_method=calib_method, max_drop=max_drop, guard=not no_guard,
                      trt_calibration=trt_calibration)
    report = quantize_run(run, split_csv(runtime) or None, cfg, data_root=data, console=con, verify=not no_verify)
    print_int8(report)


def print_int8(report: dict) -> None:
    """The per-runtime FP32/INT8 table; an error line if the guard could not reach --max-drop somewhere."""
    from rich.markup import escape

    _print_summary(report)
    for rt, r in report["runtimes"].items():
        for key in ("caveat", "coverage_caveat"):
            if r.get(key):
                console.print(f"[yellow]{rt}:[/] {escape(r[key])}", highlight=False)
    failed = [rt for rt, r in report["runtimes"].items() if not r["artifact"]]
    if failed:
        raise EdgeAffectError(f"INT8 for {', '.join(failed)} not written: "
                              + "; ".join(report["runtimes"][rt]["message"] for rt in failed))


@quantize_app.command("prune")
def prune(run: RunArg,
          ratio: Annotated[float, typer.Option("--ratio", help="Fraction of channels to remove per group, in (0, 0.9].")] = 0.4,
          finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="Fine-tuning epochs after pruning.")] = 5,
          importance: Annotated[str, typer.Option("--importance", help="magnitude | taylor.")] = "magnitude",
          branch: Annotated[Optional[str], typer.Option("--branch", help="Per-branch ratios, e.g. video=0.5,audio=0.2.")] = None,
          distill: Annotated[float, typer.Option("--distill", help="Weight of distillation from the unpruned model (0 = off).")] = 0.0,
          lr: Annotated[float, typer.Option("--lr", help="Fine-tuning learning rate.")] = 5e-4,
          data: DataRootOpt = None) -> None:
    """Prune channels (dependency-graph aware), fine-tune, and write <run>/pruned-<ratio>/.

    Example:  edgeaffect quantize prune runs/eri/<run> --ratio 0.4 --finetune-epochs 5
    """
    check_ratio(ratio)
    branches = {}
    for item in split_csv(branch):
        name, _, value = item.partition("=")
        try:
            branches[name.strip()] = float(value)
        except ValueError:
            raise EdgeAffectError(f"--branch expects name=ratio pairs, got {item!r}") from None
    out = prune_run(run, ratio, importance=importance, finetune_epochs=finetune_epochs, branch_ratios=branches,
                    distill=distill, lr=lr, data_root=data, console=console)
    print_pruning(out)


def print_pruning(out: Path) -> None:
    """One line: params, FLOPs and the task metric before and after pruning + fine-tuning."""
    p = read_json(Path(out) / "manifest.json")["pruning"]
    b, a = p["before"], p["after"]
    console.print(f"[bold]{out}[/]: params {b['params']:,} -> {a['params']:,}, GFLOPs {b['gflops']} -> {a['gflops']} "
                  f"({p['speedup_flops']}x fewer), {p['metric_name']} {b['metric']:.4f} -> {a['metric']:.4f} "
                  f"(before fine-tuning {p['pruned_no_finetune']['metric']:.4f})")


@quantize_app.command("report")
def report(run: RunArg,
           top: Annotated[int, typer.Option("--top", help="Sensitive tensors to list per runtime.")] = 10,
           data: DataRootOpt = None) -> None:
    """Show what INT8 cost per runtime, the most sensitive tensors, and what was kept in float and why.

    The per-tensor ranking is the model-output SQNR with only that tensor in INT8; where the
    guard did not need it (plain INT8 passed), it is computed now on the calibration samples.

    Example:  edgeaffect quantize report runs/eri/<run>
    """
    from ..quantize.pipeline import REPORT, fill_sensitivity

    path = Path(run) / REPORT
    if not path.exists():
        raise EdgeAffectError(f"{run} has no quantization report; run: edgeaffect export {run} --int8")
    data = fill_sensitivity(run, data_root=data, console=console)
    _print_summary(data)
    from rich.table import Table

    for rt, r in data["runtimes"].items():
        if not r.get("sensitivity"):
            continue
        t = Table(title=f"{rt}: most sensitive tensors (model-output NSR with only that tensor in INT8)")
        for col in ("tensor", "kind", "SQNR dB", "layers", "kept float"):
            t.add_column(col)
        kept = set(r["kept_float"])
        for row in r["sensitivity"][:top]:
            t.add_row(row["tensor"], row.get("kind", "activation"), f"{row['output_sqnr_db']:.1f}", ", ".join(row["layers"]),
                      "yes" if kept & set(row["layers"]) else "")
        table_console().print(t)
        console.print(f"  kept in float: {', '.join(r['kept_float']) or 'nothing'} ({r['message']})", highlight=False)
        for i, att in enumerate(r["attempts"]):
            console.print(f"  attempt {i}: {len(att['kept_float'])} layer(s) in float "
                          f"({att.get('float_macs', 0) / 1e6:.2f} M MACs) -> {data['metric']} "
                          f"{att['metric']:.4f}, drop {att['drop_points']:.2f} pts, {_agreement(att)}")


def _print_summary(data: dict) -> None:
    from rich.table import Table

    cal = data["calibration"]
    n = len(cal["strata"])
    t = Table(title=f"INT8 {data['model']} - {data['metric']} on {data['eval_samples']} val samples; "
                    f"calibration: {cal['samples']} {cal['split']} samples in {n} {'stratum' if n == 1 else 'strata'}")
    for col in ("runtime", "guard", "FP32", "INT8", "drop (pts)", "max", "float layers", "int8 MACs", "agreement",
                "artifact"):
        t.add_column(col)
    for rt, r in data["runtimes"].items():
        ok = "[green]" if r["passed"] else "[red]"
        t.add_row(rt, f"{ok}{'accepted' if r['passed'] else 'refused'}[/]", f"{r['fp32_metric']:.4f}",
                  f"{r['int8_metric']:.4f}", f"{ok}{r['drop_points']:.2f}[/]",
                  f"{r['max_drop']:g}", str(len(r["kept_float"])), _coverage(r.get("int8_coverage")),
                  _agreement(r["agreement"]),
                  r["artifact"] or f"(not written; best attempt {r.get('best_attempt')})")
    table_console().print(t)


def _coverage(cov: dict | None) -> str:
    """``97% (1 float)``: the share of MACs the compiled artifact runs in int8, and its float layers."""
    return f"{cov['macs']:.0%} ({cov['float_layers']} float)" if cov else "-"


def _agreement(d: dict) -> str:
    """``top-1 0.983`` / ``pearson 0.999``: agreement with FP32 in the task's terms (``evaluate.compare``)."""
    return f"{d['kind']} {d['agreement']:.3f}" if "kind" in d else "-"
