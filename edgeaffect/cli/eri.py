"""ERI commands: ``data synth eri`` and ``train eri``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DeviceOpt, OverwriteOpt, SeedOpt, SynthOverwriteOpt, console, print_run_dir, split_csv, train_command
from .data import AllowSmallOpt, synth_command
from .train import train_app


@synth_command("eri")
def synth_eri(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset root to write (Hume-Reaction layout).")] = Path("data/eri"),
    clips: Annotated[int, typer.Option("--clips", min=3, help="Number of clips (split 60/20/20 train/val/test).")] = 300,
    seconds: Annotated[float, typer.Option("--seconds", min=1.0, help="Clip length in seconds.")] = 4.0,
    seed: SeedOpt = 0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Parallel processes.")] = 2,
    overwrite: SynthOverwriteOpt = False,
    allow_small: AllowSmallOpt = False,
) -> None:
    """Write a synthetic Hume-Reaction set: data_info.csv + {train,val,test}/<File_ID>.mp4 (H.264 + AAC).

    Faces react with geometry that follows the 7 intensities, voices with prosody that follows them;
    some intensities show only in the face, some only in the voice, some in both.

    Example:  edgeaffect data synth eri --out data/eri --clips 300 --seed 0
    """
    from ..data.synth import refuse_few_train_clips
    from ..quantize.config import MIN_CALIB_SAMPLES
    from ..data.synth.eri import ERISynthConfig, generate_eri

    refuse_few_train_clips(clips, ERISynthConfig().split[0], MIN_CALIB_SAMPLES, allow_small)
    generate_eri(out, ERISynthConfig(clips=clips, seed=seed, seconds=seconds), workers=workers, console=console,
                 overwrite=overwrite)
    console.print(f"[green]wrote {clips} clips to {out}[/]  (data_info.csv + train/ val/ test/)")


@train_app.command("eri")
def train_eri_cmd(
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Hume-Reaction root (data_info.csv + train/ val/ test/).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/eri/<timestamp>).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue an interrupted run directory.")] = None,
    overwrite: OverwriteOpt = False,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs per stage.")] = 20,
    model: Annotated[str, typer.Option("--model", help="Fused model to train: eri_dual_branch or eri_int8 (dense convs for int8 kernels).")] = "eri_dual_branch",
    stages: Annotated[str, typer.Option("--stages", help="Comma-separated stages, in order: audio,video,fused.")] = "audio,video,fused",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (cosine schedule).")] = 2e-3,
    loss: Annotated[str, typer.Option("--loss", help="mse or pcc (1 - Pearson).")] = "mse",
    frames: Annotated[int, typer.Option("--frames", min=2, help="Face frames sampled per clip.")] = 32,
    face_size: Annotated[int, typer.Option("--face-size", min=32, help="Face crop size in pixels.")] = 112,
    audio_seconds: Annotated[float, typer.Option("--audio-seconds", help="Audio window (centre-cropped / padded).")] = 4.0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Preprocessing processes.")] = 2,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Feature cache folder (default <data>/.cache/edgeaffect).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Train the ERI dual-branch model: audio stage, video stage, then the fused model from both.

    Example:  edgeaffect train eri --data data/eri --epochs 20 --out runs/eri/exp1
    Variant:  edgeaffect train eri --data data/eri --model eri_int8 --out runs/eri/int8arch
    Resume:   edgeaffect train eri --resume runs/eri/exp1
    Multi-process (DDP): torchrun --nproc_per_node 2 -m edgeaffect train eri --data data/eri
    """
    from ..train.eri import ERITrainOptions

    def build(data: Path, out: Path) -> ERITrainOptions:
        return ERITrainOptions(data=data, model=model, stages=tuple(split_csv(stages)), epochs=epochs, batch_size=batch_size, lr=lr,
                               loss=loss, model_overrides={"frames": frames, "face_size": face_size,
                                                           "audio_seconds": audio_seconds},
                               workers=workers, cache_dir=cache, seed=seed, device=device)

    train_command("eri", build, data=data, out=out, resume=resume, summary=_print_summary, overwrite=overwrite)


def _print_summary(manifest, out: Path) -> None:
    from rich.table import Table

    table = Table(title="ERI validation mean Pearson r")
    table.add_column("stage")
    table.add_column("val Pearson", justify="right")
    table.add_column("best epoch", justify="right")
    for stage, m in manifest.metrics.items():
        table.add_row(stage, f"{m['val_pearson']:.4f}", str(m["best_epoch"]))
    console.print(table)
    print_run_dir(out)
