"""EmoReact bodily expression commands: ``data synth body`` (alias ``emoreact``) and ``train body``."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ..labels import EMOREACT_LABELS as LABELS
from .common import (AllowSmallOpt, ClipSecondsOpt, DeviceOpt, OverwriteOpt, PrepWorkersOpt, ResumeOpt, SeedOpt,
                     SynthOverwriteOpt, SynthWorkersOpt, batch_size_opt, cache_opt, clips_opt, console, data_opt,
                     epochs_opt, lr_opt, print_run_dir, run_out_opt, synth_clip_set, synth_out_opt, train_command,
                     use_threads)
from .data import synth_command
from .train import train_app

INPUT_HELP = "face, body (face blacked out), fullbody, or fusion (body + face streams)."


@synth_command("body", "emoreact")
def synth_emoreact(
    out: synth_out_opt("EmoReact layout") = Path("data/emoreact"),
    clips: clips_opt(4, "50/25/25") = 240,
    seconds: ClipSecondsOpt = 2.4,
    seed: SeedOpt = 0,
    workers: SynthWorkersOpt = 2,
    overwrite: SynthOverwriteOpt = False,
    allow_small: AllowSmallOpt = False,
) -> None:
    """Write a synthetic EmoReact set: {train,val,test}.csv + {Train,Validation,Test}/<video>.mp4 (H.264).

    A child-like figure reacts with face and body; some of the 8 labels show only on the body, some only
    on the face, some on both, so fusion beats a single stream.

    Example:  edgeaffect data synth body --out data/emoreact --clips 240 --seed 0
    """
    from ..data.synth.emoreact import EmoReactSynthConfig, generate_emoreact

    synth_clip_set(generate_emoreact, EmoReactSynthConfig(clips=clips, seed=seed, seconds=seconds), out,
                   workers=workers, overwrite=overwrite, allow_small=allow_small,
                   layout="train.csv val.csv test.csv + Train/ Validation/ Test/")


@train_app.command("body")
def train_body_cmd(
    data: data_opt("EmoReact root ({train,val,test}.csv + Train/ Validation/ Test/).") = None,
    input: Annotated[str, typer.Option("--input", help=INPUT_HELP)] = "body",
    arch: Annotated[str, typer.Option("--arch", help="Backbone: mobilenet_v2 or resnet50.")] = "mobilenet_v2",
    segments: Annotated[int, typer.Option("--segments", min=1, help="TSN segments (one frame each) per clip.")] = 3,
    shift: Annotated[bool, typer.Option("--shift/--no-shift", help="Temporal shift module (TSM) in every residual block.")] = False,
    shift_div: Annotated[int, typer.Option("--shift-div", min=2, help="1/shift_div of the channels shift each way.")] = 8,
    size: Annotated[int, typer.Option("--size", min=32, help="Frame size fed to the network (the seed: 224).")] = 224,
    width: Annotated[float, typer.Option("--width", min=0.1, help="Backbone width multiplier (1.0 = the published network).")] = 1.0,
    partial_bn: Annotated[bool, typer.Option("--partial-bn/--no-partial-bn", help="Freeze all BatchNorm but the first (the seed's setting, meant for pretrained backbones).")] = True,
    fusion_streams: Annotated[str, typer.Option("--fusion-streams", help="--input fusion: separate (a network per stream) or shared (the seed's one network for both).")] = "separate",
    out: run_out_opt("body") = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = False,
    epochs: epochs_opt("Epochs (the seed: 12).") = 12,
    batch_size: batch_size_opt("Clips per step (the seed: 8).") = 8,
    lr: lr_opt("Learning rate (the seed: SGD 0.01, momentum 0.9, wd 5e-4).") = 0.01,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd (the seed's) or adamw (wd 1e-4; often better from scratch).")] = "sgd",
    cache_frames: Annotated[int, typer.Option("--cache-frames", min=1, help="Frames kept per clip in the cache; TSN samples among them.")] = 32,
    workers: PrepWorkersOpt = 1,
    cache: cache_opt("Clip", "<data>/.cache/edgeaffect") = None,
    test: Annotated[bool, typer.Option("--test/--no-test", help="Score the best epoch on the test split.")] = True,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0 = torch's default; 1 is fastest on a busy machine).")] = 0,
    seed: SeedOpt = 42,
    device: DeviceOpt = "cpu",
) -> None:
    """Train a TSN / TSM bodily-expression model on EmoReact (8 labels, BCE, SGD as the seed).

    Example:  edgeaffect train body --data data/emoreact --input fusion --segments 3 --arch mobilenet_v2 --shift
    Seed's shared network:  ... --input fusion --fusion-streams shared
    Resume:   edgeaffect train body --resume runs/body/exp1
    """
    from ..train.body import BodyTrainOptions

    use_threads(threads)

    def build(data: Path, out: Path) -> BodyTrainOptions:
        return BodyTrainOptions(data=data, input=input, arch=arch, segments=segments, shift=shift, shift_div=shift_div,
                                size=size, width=width, partial_bn=partial_bn, fusion_streams=fusion_streams,
                                epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                cache_frames=cache_frames, workers=workers, cache_dir=cache, evaluate_test=test,
                                seed=seed, device=device)

    train_command("body", build, data=data, out=out, resume=resume, summary=_print_summary, overwrite=overwrite)


def _score(value) -> str:
    """A ROC-AUC to 4 places; ``-`` where it is undefined (null or NaN: a label with one outcome in the split)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _print_summary(manifest, out: Path) -> None:
    from rich.table import Table

    m = manifest.metrics["train"]
    table = Table(title=f"{manifest.model}: ROC-AUC (best epoch {m['best_epoch']})")
    table.add_column("")
    splits = ["val"] + (["test"] if "test_roc_auc_micro" in m else [])
    for s in splits:
        table.add_column(s, justify="right")
    table.add_row("micro", *[_score(m.get(f"{s}_roc_auc_micro")) for s in splits])
    table.add_row("macro", *[_score(m.get(f"{s}_roc_auc_macro")) for s in splits])
    notes = set()
    for label in LABELS:
        per = [m[f"{s}_per_class"] for s in splits]
        table.add_row(label, *[_score(p.get(f"roc_auc_{label}")) for p in per])
        notes.update(p[f"roc_auc_{label}_note"] for p in per if p.get(f"roc_auc_{label}_note"))
    console.print(table)
    if notes:   # a tiny split lacks a label: its ROC-AUC is undefined (null in the manifest), not a crash
        console.print(f"-: no ROC-AUC ({'; '.join(sorted(notes))})")
    print_run_dir(out)
