"""``edgeaffect data synth va`` (alias ``affwild2-va``) and ``edgeaffect train va`` (Aff-Wild2 valence-arousal)."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.synth import refuse_small
from ..errors import EdgeAffectError
from ..lazy import lazy_import
from ..logs import make_progress
from .common import (AllowSmallOpt, DeviceOpt, OverwriteOpt, ResumeOpt, SeedOpt, SynthOverwriteOpt, batch_size_opt,
                     cache_opt, console, data_opt, epochs_opt, lr_opt, print_run_dir, run_out_opt, synth_out_opt,
                     train_command)
from .data import synth_command
from .train import train_app

torch = lazy_import("torch", "train")


class Variant(str, Enum):
    edge = "edge"
    jca = "jca"
    jca_lite = "jca_lite"


@synth_command("va", "affwild2-va")
def synth_affwild2_va(
    out: synth_out_opt("cropped_aligned/, VA_Estimation_Challenge/, videos/"),
    train_videos: Annotated[int, typer.Option(min=1, help="Training videos (the last one is a _left/_right pair).")] = 8,
    val_videos: Annotated[int, typer.Option(min=1, help="Validation videos (the last one is a _left/_right pair).")] = 3,
    frames: Annotated[int, typer.Option(min=16, help="Frames per video at 30 fps (the edge model's sequences need 128, the reference's 512).")] = 600,
    size: Annotated[int, typer.Option(min=32, help="Aligned face size in pixels.")] = 112,
    seed: SeedOpt = 0,
    overwrite: SynthOverwriteOpt = False,
    allow_small: AllowSmallOpt = False,
) -> None:
    """Write a synthetic Aff-Wild2 valence-arousal set in the distributed layout.

    Valence shows mostly in the face, arousal mostly in the voice (and partly in
    face motion); both vary smoothly over time.

    Example:  edgeaffect data synth va --out data/affwild2
    """
    from ..data.synth.affwild2_va import generate
    if min(train_videos, val_videos) < 1 or frames < 16 or size < 32:
        raise EdgeAffectError("need --train-videos and --val-videos >= 1, --frames >= 16 and --size >= 32")
    span, parts = _edge_sequence_frames()
    refuse_small("--frames", frames, span, f"`train va` (edge variant) reads sequences of {span} frames ({parts}), "
                 "a shorter video gives none", allow_small)
    total = (train_videos + (train_videos >= 2) + val_videos + (val_videos >= 2)) * frames
    with make_progress(console, "synth va") as progress:
        bar = progress.add_task("rendering faces and voices", total=total)
        summary = generate(out, train_videos, val_videos, frames, size, seed,
                           progress=lambda n: progress.advance(bar, n), overwrite=overwrite)
    for split, names in summary.videos.items():
        console.print(f"{split}: {len(names)} videos, {summary.frames[split]} face images, "
                      f"{summary.invalid_rows[split]} unannotated rows")
    console.print(f"wrote {out}")


def _edge_sequence_frames() -> tuple[int, str]:
    """Frames one sequence of the default (edge) VA model spans, and how; 0 without torch, where nothing trains."""
    try:
        from ..models.va import EDGE_DEFAULTS as d
    except ImportError:
        return 0, ""
    return (d["subclips"] * d["frames"] * d["dilation"],
            f"{d['subclips']} sub-clips x {d['frames']} frames x dilation {d['dilation']}")


@train_app.command("va")
def train_va(
    data: data_opt("Aff-Wild2 root (cropped_aligned/, VA_Estimation_Challenge/, raw videos).") = None,
    variant: Annotated[Variant, typer.Option(help="edge: 48 px, width-16 backbones, compact JCA (trains on a CPU); "
                                                  "jca: the reference model (R(2+1)D-18, ResNet-18, joint co-attention "
                                                  "+ BiLSTM); jca_lite: reference backbones with the compact JCA.")] = Variant.edge,
    frame_size: Annotated[Optional[int], typer.Option(min=16, help="Override the face size in pixels.")] = None,
    width: Annotated[Optional[int], typer.Option(min=1, help="Override the backbone width (64 = the published networks).")] = None,
    subclips: Annotated[Optional[int], typer.Option(min=1, help="Override the number of sub-clips per sequence.")] = None,
    epochs: epochs_opt("Training epochs.") = 10,
    batch_size: batch_size_opt("Sequences per batch.") = 8,
    lr: lr_opt("Adam learning rate (decayed x0.8 every 2 epochs after epoch 5).") = 1e-3,
    stride: Annotated[int, typer.Option(min=1, help="Shift between training sequences in frames, within a sub-clip window (1 = the reference).")] = 1,
    max_train: Annotated[Optional[int], typer.Option(min=1, help="Use at most this many training sequences (evenly spaced).")] = None,
    max_val: Annotated[Optional[int], typer.Option(min=1, help="Use at most this many validation sequences (evenly spaced).")] = None,
    out: run_out_opt("va") = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = False,
    cache: cache_opt("Mel-spectrogram", "<data>/.cache/edgeaffect/va") = None,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
) -> None:
    """Train a valence-arousal model on Aff-Wild2 (VA track layout); writes runs/va/<run>/.

    Example:  edgeaffect train va --data data/affwild2 --variant edge --epochs 8 --out runs/va/edge
    Resume:   edgeaffect train va --resume runs/va/edge
    """
    from ..train.va import VATrainOptions

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeAffectError(f"--device {device} requested but CUDA is not available")

    def build(data: Path, out: Path) -> VATrainOptions:
        overrides = {k: v for k, v in (("frame_size", frame_size), ("width", width), ("subclips", subclips)) if v is not None}
        return VATrainOptions(data=data, variant=variant.value, model_overrides=overrides, epochs=epochs,
                              batch_size=batch_size, lr=lr, stride=stride, max_train=max_train, max_val=max_val,
                              cache_dir=cache, seed=seed, device=device)

    train_command("va", build, data=data, out=out, resume=resume, summary=_print_summary, overwrite=overwrite)


def _print_summary(manifest, out: Path) -> None:
    from rich.table import Table

    best = manifest.metrics["train"]
    table = Table(title=f"{manifest.model}: validation CCC (best epoch {best['best_epoch']})")
    for col in ("valence", "arousal", "mean"):
        table.add_column(col, justify="right")
    table.add_row(f"{best['val_ccc_valence']:.4f}", f"{best['val_ccc_arousal']:.4f}", f"{best['val_ccc']:.4f}")
    console.print(table)
    print_run_dir(out)
