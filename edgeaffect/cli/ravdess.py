"""RAVDESS commands: ``data synth ravdess`` and ``train ravdess``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DeviceOpt, SeedOpt, console, split_csv
from .data import synth_app
from .train import train_app

_FUSIONS = ("ia", "it", "lt")
_DROPOUTS = ("softhard", "noise", "none")


def _actors(value: str, option: str) -> list[int]:
    from ..errors import EdgeAffectError

    try:
        actors = [int(v) for v in split_csv(value)]
    except ValueError:
        raise EdgeAffectError(f"{option} takes comma-separated actor numbers, e.g. 5,10,16,19; got {value!r}") from None
    if any(not 1 <= a <= 99 for a in actors):
        raise EdgeAffectError(f"{option}: actor numbers are 1..99; got {value!r}")
    return actors


@synth_app.command("ravdess")
def synth_ravdess(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset root to write (RAVDESS layout: Actor_XX/).")] = Path("data/ravdess"),
    actors: Annotated[int, typer.Option("--actors", min=1, max=99, help="Number of actors (Actor_01 ...).")] = 24,
    statements: Annotated[int, typer.Option("--statements", min=1, max=2, help="Statements per emotion (RAVDESS has 2).")] = 2,
    repetitions: Annotated[int, typer.Option("--repetitions", min=1, max=2, help="Repetitions per statement (RAVDESS has 2).")] = 1,
    intensities: Annotated[int, typer.Option("--intensities", min=1, max=2, help="1: normal only; 2: normal and strong (neutral has only normal).")] = 1,
    seed: SeedOpt = 0,
) -> None:
    """Write a synthetic RAVDESS: Actor_XX/01-01-EE-II-SS-RR-XX.mp4 (H.264 + AAC) + matching 03-...wav.

    Faces and voices follow the 8 emotions; neutral/calm differ only in the voice, angry/disgust and
    fearful/surprised only in the face, so fusion beats video-only, which beats audio-only.

    Example:  edgeaffect data synth ravdess --out data/ravdess --actors 24
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..data.synth.ravdess import generate_ravdess
    from ..errors import EdgeAffectError

    if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        if not any(out.glob("Actor_*")):
            raise EdgeAffectError(f"{out} exists and is not a RAVDESS folder written by this command; choose an empty folder")
    with Progress(TextColumn("[bold]synth ravdess[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        bar = progress.add_task("clips", total=None)
        written = generate_ravdess(out, actors=actors, statements=statements, repetitions=repetitions,
                                   intensities=intensities, seed=seed,
                                   progress=lambda k, n: progress.update(bar, completed=k, total=n))
    console.print(f"[green]wrote {len(written)} clips ({actors} actors) to {out}[/]  (Actor_XX/ with .mp4 + .wav)")


@train_app.command("ravdess")
def train_ravdess_cmd(
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="RAVDESS root (Actor_XX/ or ACTORXX/ folders).")] = None,
    fusion: Annotated[str, typer.Option("--fusion", help="ia (intermediate attention), it (intermediate transformer), lt (late transformer).")] = "ia",
    dropout_mode: Annotated[str, typer.Option("--dropout-mode", help="Modality dropout: softhard (batch x4), noise (x3) or none.")] = "softhard",
    heads: Annotated[int, typer.Option("--heads", min=1, help="Attention heads (paper: 1 or 4).")] = 1,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs (reference: 100).")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Clips per batch before modality dropout (reference: 8).")] = 8,
    lr: Annotated[float, typer.Option("--lr", help="SGD learning rate (reference: 0.04, x0.1 at epochs 40,55,65,70).")] = 0.04,
    milestones: Annotated[str, typer.Option("--milestones", help="Epochs where the learning rate drops x0.1.")] = "40,55,65,70,200,250",
    frames: Annotated[int, typer.Option("--frames", min=1, help="Face frames per clip (reference: 15).")] = 15,
    face_size: Annotated[int, typer.Option("--face-size", min=32, help="Face crop size, a multiple of 16 (reference: 224).")] = 224,
    test_actors: Annotated[str, typer.Option("--test-actors", help="Test actors (default: the authors' released split).")] = "5,10,16,19",
    val_actors: Annotated[str, typer.Option("--val-actors", help="Validation actors; the rest train.")] = "11,13,18,22",
    vocal: Annotated[str, typer.Option("--vocal", help="Clips to read: speech (as the reference), song, or all.")] = "speech",
    pretrained: Annotated[Optional[Path], typer.Option("--pretrained", help="EfficientFace checkpoint (e.g. EfficientFace_Trained_on_AffectNet7.pth.tar) for the visual backbone.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/ravdess/<timestamp>).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue an interrupted run directory.")] = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Preprocessed-clip cache (default <data>/.cache/edgeaffect/ravdess).")] = None,
    seed: SeedOpt = 1,
    device: DeviceOpt = "cpu",
) -> None:
    """Train the self-attention audio-visual fusion model on RAVDESS with the reference recipe.

    Example:  edgeaffect train ravdess --data data/ravdess --fusion ia --dropout-mode softhard --heads 1
    Small:    edgeaffect train ravdess --data data/ravdess --face-size 64 --epochs 3 --out runs/ravdess/small
    Resume:   edgeaffect train ravdess --resume runs/ravdess/small
    """
    from ..errors import EdgeAffectError
    from ..fileio import read_json
    from ..runs import timestamp
    from ..train.ravdess import reference_config, train_ravdess

    if fusion not in _FUSIONS:
        raise EdgeAffectError(f"--fusion must be one of {', '.join(_FUSIONS)}, not {fusion!r}")
    if dropout_mode not in _DROPOUTS:
        raise EdgeAffectError(f"--dropout-mode must be one of {', '.join(_DROPOUTS)}, not {dropout_mode!r}")
    from ..data.ravdess import VOCAL_CHANNELS

    if vocal not in VOCAL_CHANNELS:
        raise EdgeAffectError(f"--vocal must be one of {', '.join(VOCAL_CHANNELS)}, not {vocal!r}")
    if face_size % 16:
        raise EdgeAffectError(f"--face-size must be a multiple of 16, not {face_size}")
    try:
        steps = tuple(int(m) for m in split_csv(milestones))
    except ValueError:
        raise EdgeAffectError(f"--milestones takes comma-separated epochs, got {milestones!r}") from None
    overrides = {"heads": heads, "frames": frames, "face_size": face_size}
    cfg = reference_config(epochs=epochs, batch_size=batch_size, lr=lr, milestones=steps, seed=seed, device=device)
    tests, vals = _actors(test_actors, "--test-actors"), _actors(val_actors, "--val-actors")
    if resume is not None:
        manifest = resume / "manifest.json"
        if not manifest.exists():
            raise EdgeAffectError(f"cannot resume: {manifest} not found")
        m = read_json(manifest)
        if m.get("task") != "ravdess":
            raise EdgeAffectError(f"cannot resume: {resume} is a {m.get('task')!r} run, not ravdess")
        data = Path(m["data"]["root"])
        c = m["config"]
        from ..train.trainer import TrainConfig

        cfg = TrainConfig(**{**c["train"], "milestones": tuple(c["train"]["milestones"])})
        overrides, fusion, dropout_mode = c["model"], c["fusion"], c["dropout_mode"]
        kw = m["data"].get("dataset_kwargs", {})
        tests, vals = kw.get("test_actors", tests), kw.get("val_actors", vals)
        vocal = kw.get("vocal", vocal)
        cache = Path(kw["cache_dir"]) if kw.get("cache_dir") else cache
        pretrained = Path(c["pretrained"]["path"]) if c.get("pretrained") else None
        out = resume
    if data is None:
        raise EdgeAffectError("--data is required (or --resume RUN)")
    out = out or Path("runs/ravdess") / timestamp()
    metrics = train_ravdess(data, out, config=cfg, fusion=fusion, dropout_mode=dropout_mode, model_overrides=overrides,
                            test_actors=tests, val_actors=vals, pretrained=pretrained, cache_dir=cache, vocal=vocal,
                            resume=resume is not None, console=console)
    from rich.table import Table

    table = Table(title=f"RAVDESS ravdess_{fusion}, modality dropout {dropout_mode}")
    for col in ("val accuracy", "best epoch", "test accuracy"):
        table.add_column(col, justify="right")
    test = metrics.get("test_accuracy")
    table.add_row(f"{metrics['val_accuracy']:.4f}", str(metrics["best_epoch"]), "-" if test is None else f"{test:.4f}")
    console.print(table)
    console.print(f"[green]run directory:[/] {out}  (checkpoint.pt, manifest.json)")
