"""ERI commands: ``data synth eri`` and ``train eri``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (AllowSmallOpt, ClipSecondsOpt, DeviceOpt, OverwriteOpt, PrepWorkersOpt, ResumeOpt, SeedOpt,
                     SynthOverwriteOpt, SynthWorkersOpt, batch_size_opt, cache_opt, clips_opt, console, data_opt,
                     epochs_opt, lr_opt, print_run_dir, run_out_opt, split_csv, synth_clip_set, synth_out_opt,
                     train_command)
from .data import synth_command
from .train import train_app


@synth_command("eri")
def synth_eri(
    out: synth_out_opt("Hume-Reaction layout") = Path("data/eri"),
    clips: clips_opt(3, "60/20/20") = 300,
    seconds: ClipSecondsOpt = 4.0,
    seed: SeedOpt = 0,
    workers: SynthWorkersOpt = 2,
    overwrite: SynthOverwriteOpt = False,
    allow_small: AllowSmallOpt = False,
) -> None:
    """Write a synthetic Hume-Reaction set: data_info.csv + {train,val,test}/<File_ID>.mp4 (H.264 + AAC).

    Faces react with geometry that follows the 7 intensities, voices with prosody that follows them;
    some intensities show only in the face, some only in the voice, some in both.

    Example:  edgeaffect data synth eri --out data/eri --clips 300 --seed 0
    """
    from ..data.synth.eri import ERISynthConfig, generate_eri

    synth_clip_set(generate_eri, ERISynthConfig(clips=clips, seed=seed, seconds=seconds), out, workers=workers,
                   overwrite=overwrite, allow_small=allow_small, layout="data_info.csv + train/ val/ test/")


@train_app.command("eri")
def train_eri_cmd(
    data: data_opt("Hume-Reaction root (data_info.csv + train/ val/ test/).") = None,
    out: run_out_opt("eri") = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = False,
    epochs: epochs_opt("Epochs per stage.") = 20,
    model: Annotated[str, typer.Option("--model", help="Fused model to train: eri_dual_branch or eri_int8 (dense convs for int8 kernels).")] = "eri_dual_branch",
    stages: Annotated[str, typer.Option("--stages", help="Comma-separated stages, in order: audio,video,fused.")] = "audio,video,fused",
    batch_size: batch_size_opt() = 16,
    lr: lr_opt("AdamW learning rate (cosine schedule).") = 2e-3,
    loss: Annotated[str, typer.Option("--loss", help="mse or pcc (1 - Pearson).")] = "mse",
    frames: Annotated[int, typer.Option("--frames", min=2, help="Face frames sampled per clip.")] = 32,
    face_size: Annotated[int, typer.Option("--face-size", min=32, help="Face crop size in pixels.")] = 112,
    audio_seconds: Annotated[float, typer.Option("--audio-seconds", help="Audio window (centre-cropped / padded).")] = 4.0,
    workers: PrepWorkersOpt = 2,
    cache: cache_opt("Feature", "<data>/.cache/edgeaffect") = None,
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
