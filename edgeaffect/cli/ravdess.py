"""RAVDESS commands: ``data synth ravdess`` and ``train ravdess``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..data.synth import refuse_small
from ..errors import EdgeAffectError
from ..logs import make_progress
from .common import (AllowSmallOpt, DeviceOpt, OverwriteOpt, ResumeOpt, SeedOpt, SynthOverwriteOpt, batch_size_opt,
                     cache_opt, console, data_opt, epochs_opt, lr_opt, print_run_dir, run_out_opt, split_csv,
                     synth_out_opt, train_command)
from .data import synth_command
from .train import train_app


def _actors(value: str, option: str) -> list[int]:
    try:
        actors = [int(v) for v in split_csv(value)]
    except ValueError:
        raise EdgeAffectError(f"{option} takes comma-separated actor numbers, e.g. 5,10,16,19; got {value!r}") from None
    if any(not 1 <= a <= 99 for a in actors):
        raise EdgeAffectError(f"{option}: actor numbers are 1..99; got {value!r}")
    return actors


@synth_command("ravdess")
def synth_ravdess(
    out: synth_out_opt("RAVDESS layout: Actor_XX/") = Path("data/ravdess"),
    actors: Annotated[int, typer.Option("--actors", min=1, max=99, help="Number of actors (Actor_01 ...).")] = 24,
    statements: Annotated[int, typer.Option("--statements", min=1, max=2, help="Statements per emotion (RAVDESS has 2).")] = 2,
    repetitions: Annotated[int, typer.Option("--repetitions", min=1, max=2, help="Repetitions per statement (RAVDESS has 2).")] = 1,
    intensities: Annotated[int, typer.Option("--intensities", min=1, max=2, help="1: normal only; 2: normal and strong (neutral has only normal).")] = 1,
    seed: SeedOpt = 0,
    overwrite: SynthOverwriteOpt = False,
    allow_small: AllowSmallOpt = False,
) -> None:
    """Write a synthetic RAVDESS: Actor_XX/01-01-EE-II-SS-RR-XX.mp4 (H.264 + AAC) + matching 03-...wav.

    Faces and voices follow the 8 emotions; neutral/calm differ only in the voice, angry/disgust and
    fearful/surprised only in the face, so fusion beats video-only, which beats audio-only.

    Example:  edgeaffect data synth ravdess --out data/ravdess --actors 24
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..data.ravdess import DEFAULT_TEST_ACTORS, DEFAULT_VAL_ACTORS
    from ..data.synth.ravdess import generate_ravdess
    fewest = max(min(DEFAULT_TEST_ACTORS), min(DEFAULT_VAL_ACTORS))
    refuse_small("--actors", actors, fewest, f"`train ravdess` tests on actors {_csv(DEFAULT_TEST_ACTORS)} and "
                 f"validates on {_csv(DEFAULT_VAL_ACTORS)}, so fewer leave a split empty "
                 f"({max(DEFAULT_TEST_ACTORS + DEFAULT_VAL_ACTORS)} fill both)", allow_small)
    with make_progress(console, "synth ravdess", TextColumn("[bold]synth ravdess[/]"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn()) as progress:
        bar = progress.add_task("clips", total=None)
        written = generate_ravdess(out, actors=actors, statements=statements, repetitions=repetitions,
                                   intensities=intensities, seed=seed, overwrite=overwrite,
                                   progress=lambda k, n: progress.update(bar, completed=k, total=n))
    console.print(f"[green]wrote {len(written)} clips ({actors} actors) to {out}[/]  (Actor_XX/ with .mp4 + .wav)")


def _csv(numbers) -> str:
    return ",".join(str(n) for n in numbers)


@train_app.command("ravdess")
def train_ravdess_cmd(
    data: data_opt("RAVDESS root (Actor_XX/ or ACTORXX/ folders).") = None,
    fusion: Annotated[str, typer.Option("--fusion", help="ia (intermediate attention), it (intermediate transformer), lt (late transformer).")] = "ia",
    dropout_mode: Annotated[str, typer.Option("--dropout-mode", help="Modality dropout: softhard (batch x4), noise (x3) or none.")] = "softhard",
    heads: Annotated[int, typer.Option("--heads", min=1, help="Attention heads (paper: 1 or 4).")] = 1,
    epochs: epochs_opt("Epochs (reference: 100).") = 100,
    batch_size: batch_size_opt("Clips per batch before modality dropout (reference: 8).") = 8,
    lr: lr_opt("SGD learning rate (reference: 0.04, x0.1 at epochs 40,55,65,70).") = 0.04,
    milestones: Annotated[str, typer.Option("--milestones", help="Epochs where the learning rate drops x0.1.")] = "40,55,65,70,200,250",
    frames: Annotated[int, typer.Option("--frames", min=1, help="Face frames per clip (reference: 15).")] = 15,
    face_size: Annotated[int, typer.Option("--face-size", min=32, help="Face crop size, a multiple of 16 (reference: 224).")] = 224,
    test_actors: Annotated[str, typer.Option("--test-actors", help="Test actors (default: the authors' released split).")] = "5,10,16,19",
    val_actors: Annotated[str, typer.Option("--val-actors", help="Validation actors; the rest train.")] = "11,13,18,22",
    vocal: Annotated[str, typer.Option("--vocal", help="Clips to read: speech (as the reference), song, or all.")] = "speech",
    pretrained: Annotated[Optional[Path], typer.Option("--pretrained", help="EfficientFace checkpoint (e.g. EfficientFace_Trained_on_AffectNet7.pth.tar) for the visual backbone.")] = None,
    out: run_out_opt("ravdess") = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = False,
    cache: cache_opt("Preprocessed-clip", "<data>/.cache/edgeaffect/ravdess") = None,
    seed: SeedOpt = 1,
    device: DeviceOpt = "cpu",
) -> None:
    """Train the self-attention audio-visual fusion model on RAVDESS with the reference recipe.

    Example:  edgeaffect train ravdess --data data/ravdess --fusion ia --dropout-mode softhard --heads 1
    Small:    edgeaffect train ravdess --data data/ravdess --face-size 64 --epochs 3 --out runs/ravdess/small
    Resume:   edgeaffect train ravdess --resume runs/ravdess/small
    """
    from ..train.ravdess import RavdessTrainOptions

    def build(data: Path, out: Path) -> RavdessTrainOptions:
        try:
            steps = tuple(int(m) for m in split_csv(milestones))
        except ValueError:
            raise EdgeAffectError(f"--milestones takes comma-separated epochs, got {milestones!r}") from None
        return RavdessTrainOptions(data=data, fusion=fusion, dropout_mode=dropout_mode, heads=heads, frames=frames,
                                   face_size=face_size, epochs=epochs, batch_size=batch_size, lr=lr, milestones=steps,
                                   test_actors=tuple(_actors(test_actors, "--test-actors")),
                                   val_actors=tuple(_actors(val_actors, "--val-actors")), vocal=vocal,
                                   pretrained=pretrained, cache_dir=cache, seed=seed, device=device)

    train_command("ravdess", build, data=data, out=out, resume=resume, summary=_print_summary, overwrite=overwrite)


def _print_summary(manifest, out: Path) -> None:
    from rich.table import Table

    options, metrics = manifest.config["options"], manifest.metrics["fused"]
    table = Table(title=f"RAVDESS {manifest.model}, modality dropout {options['dropout_mode']}")
    for col in ("val accuracy", "best epoch", "test accuracy"):
        table.add_column(col, justify="right")
    test = metrics.get("test_accuracy")
    table.add_row(f"{metrics['val_accuracy']:.4f}", str(metrics["best_epoch"]), "-" if test is None else f"{test:.4f}")
    console.print(table)
    print_run_dir(out)
