"""``edgeaffect data synth affwild2-va`` and ``edgeaffect train va`` (Aff-Wild2 valence-arousal)."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DataOpt, DeviceOpt, OutOpt, SeedOpt, console
from .data import synth_app
from .train import train_app


class Variant(str, Enum):
    edge = "edge"
    jca = "jca"
    jca_lite = "jca_lite"


VARIANT_MODELS = {"edge": "va_jca_edge", "jca": "va_jca", "jca_lite": "va_jca_lite"}


@synth_app.command("affwild2-va")
def synth_affwild2_va(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset root to write (cropped_aligned/, VA_Estimation_Challenge/, videos/).")],
    train_videos: Annotated[int, typer.Option(help="Training videos (the last one is a _left/_right pair).")] = 8,
    val_videos: Annotated[int, typer.Option(help="Validation videos (the last one is a _left/_right pair).")] = 3,
    frames: Annotated[int, typer.Option(help="Frames per video at 30 fps (the reference's sequences need 512).")] = 600,
    size: Annotated[int, typer.Option(help="Aligned face size in pixels.")] = 112,
    seed: SeedOpt = 0,
) -> None:
    """Write a synthetic Aff-Wild2 valence-arousal set in the distributed layout.

    Valence shows mostly in the face, arousal mostly in the voice (and partly in
    face motion); both vary smoothly over time.

    Example:  edgeaffect data synth affwild2-va --out data/affwild2
    """
    from rich.progress import Progress

    from ..data.synth.affwild2_va import generate
    from ..errors import EdgeAffectError

    if min(train_videos, val_videos) < 1 or frames < 16 or size < 32:
        raise EdgeAffectError("need --train-videos and --val-videos >= 1, --frames >= 16 and --size >= 32")
    total = (train_videos + (train_videos >= 2) + val_videos + (val_videos >= 2)) * frames
    with Progress(console=console) as progress:
        bar = progress.add_task("rendering faces and voices", total=total)
        summary = generate(out, train_videos, val_videos, frames, size, seed,
                           progress=lambda n: progress.advance(bar, n))
    for split, names in summary.videos.items():
        console.print(f"{split}: {len(names)} videos, {summary.frames[split]} face images, "
                      f"{summary.invalid_rows[split]} unannotated rows")
    console.print(f"wrote {out}")


@train_app.command("va")
def train_va(
    data: DataOpt,
    variant: Annotated[Variant, typer.Option(help="edge: 48 px, width-16 backbones, compact JCA (trains on a CPU); "
                                                  "jca: the reference model (R(2+1)D-18, ResNet-18, joint co-attention "
                                                  "+ BiLSTM); jca_lite: reference backbones with the compact JCA.")] = Variant.edge,
    frame_size: Annotated[Optional[int], typer.Option(help="Override the face size in pixels.")] = None,
    width: Annotated[Optional[int], typer.Option(help="Override the backbone width (64 = the published networks).")] = None,
    subclips: Annotated[Optional[int], typer.Option(help="Override the number of sub-clips per sequence.")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Sequences per batch.")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate (decayed x0.8 every 2 epochs after epoch 5).")] = 1e-3,
    stride: Annotated[int, typer.Option(help="Shift between training sequences in frames, within a sub-clip window (1 = the reference).")] = 1,
    max_train: Annotated[Optional[int], typer.Option(help="Use at most this many training sequences (evenly spaced).")] = None,
    max_val: Annotated[Optional[int], typer.Option(help="Use at most this many validation sequences (evenly spaced).")] = None,
    out: OutOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
) -> None:
    """Train a valence-arousal model on Aff-Wild2 (VA track layout); writes runs/va/<run>/.

    Example:  edgeaffect train va --data data/affwild2 --variant edge --epochs 8
    """
    import torch
    from rich.progress import Progress
    from rich.table import Table

    from ..errors import EdgeAffectError
    from ..models import create_model
    from ..runs import CHECKPOINT, Run, provenance, save_checkpoint, timestamp
    from ..train.trainer import Trainer
    from ..train.va import VATask, reference_recipe

    if resume and out is None:
        raise EdgeAffectError("--resume needs --out pointing at the run to continue")
    if epochs < 1 or batch_size < 1 or stride < 1:
        raise EdgeAffectError("--epochs, --batch-size and --stride must be >= 1")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeAffectError(f"--device {device} requested but CUDA is not available")
    name = VARIANT_MODELS[variant.value]
    overrides = {k: v for k, v in (("frame_size", frame_size), ("width", width), ("subclips", subclips)) if v is not None}
    model = create_model(name, **overrides)
    task = VATask()
    run_dir = Path(out) if out else Path("runs") / "va" / f"{timestamp()}-{name}"
    if not resume and (run_dir / CHECKPOINT).exists():
        raise EdgeAffectError(f"{run_dir} already holds a finished run; choose another --out")
    train_set = task.dataset(data, "train", model.spec, stride=stride, limit=max_train)
    val_set = task.dataset(data, "val", model.spec, stride=stride, limit=max_val)
    for split, ds in (("train", train_set), ("val", val_set)):
        rep = ds.report
        skipped = ", ".join(f"{k}: {v}" for k, v in rep.skipped.items()) or "none"
        console.print(f"{split}: {rep.videos} videos, {len(ds)} sequences; skipped videos: {skipped}; "
                      f"unannotated rows {rep.rows_unannotated}, out-of-range rows {rep.rows_out_of_range}")
        for line in rep.messages[:5]:
            console.print(f"  [yellow]{line}[/]")
        if len(rep.messages) > 5:
            console.print(f"  [yellow]... and {len(rep.messages) - 5} more[/]")
    with Progress(console=console) as progress:
        bar = progress.add_task("audio mel spectrograms", total=len(train_set.videos) + len(val_set.videos))
        for ds in (train_set, val_set):
            ds.prepare_audio(lambda: progress.advance(bar))
    cfg = reference_recipe(epochs, batch_size, lr, device, seed)
    torch.manual_seed(seed)
    trainer = Trainer(model, task, train_set, val_set, cfg, run_dir / "stages" / "train", label=name, console=console)
    result = trainer.fit(resume=resume)
    save_checkpoint(run_dir / CHECKPOINT, model, name, overrides)
    best = {k: v for k, v in result["best"].items()}
    Run(run_dir, {}).update(
        task="va", model=name, overrides=overrides, spec=model.spec.to_dict(),
        train={"config": cfg.to_dict(), "stride": stride, "max_train": max_train, "max_val": max_val,
               "best_epoch": result["best_epoch"], "history": result["history"]},
        data={"root": str(Path(data).resolve()), "train": train_set.report.to_dict(), "val": val_set.report.to_dict(),
              "unreadable_images": train_set.unreadable_images + val_set.unreadable_images},
        metrics={"train": best}, provenance=provenance())
    table = Table(title=f"{name}: best epoch {result['best_epoch'] + 1}/{epochs} (validation)")
    for col in ("CCC valence", "CCC arousal", "mean CCC"):
        table.add_column(col, justify="right")
    table.add_row(f"{best['ccc_valence']:.4f}", f"{best['ccc_arousal']:.4f}", f"{best['ccc']:.4f}")
    console.print(table)
    console.print(f"run: {run_dir}")
