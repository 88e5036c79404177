"""``edgeaffect data``: dataset utilities; ``data synth <kind>`` writes synthetic sets in real layouts,
``data clip`` a demo clip (faces and a voice, made offline).

Each task's CLI module adds its generator with ``@synth_command("<task>", "<dataset>")``: named as
``train <task>`` is, with the dataset's name kept as an alias.
"""
from __future__ import annotations

from pathlib import Path

import typer

from ..data.report import progress
from ..errors import EdgeAffectError
from . import app
from .common import (
    AllowSmallOpt,  # noqa: F401  (declared with the other shared options; kept importable here)
    console,
)

data_app = typer.Typer(help="Dataset utilities: synthetic sets in the real layouts, checks.", no_args_is_help=True)
synth_app = typer.Typer(
    help="Write a small synthetic dataset in a real dataset's distributed layout (deterministic from --seed).",
    no_args_is_help=True,
)
data_app.add_typer(synth_app, name="synth")
app.add_typer(data_app, name="data")


def synth_command(task: str, *aliases: str):
    """Register a generator as ``data synth <task>`` (the name ``train <task>`` uses) and under each alias."""
    def register(fn):
        synth_app.command(task)(fn)
        summary = (fn.__doc__ or "").strip().splitlines()[0]
        for alias in aliases:
            synth_app.command(alias, help=f"Same as `data synth {task}`: {summary}")(fn)
        return fn
    return register


CLIP_MEMORY = 2e9
"""Bytes of frames ``data clip`` may hold before writing (it renders the whole clip first)."""


@data_app.command("clip")
def clip_cmd(
    out: Path = typer.Argument(Path("clip.mp4"), help="The mp4 to write."),
    seconds: float = typer.Option(4.0, "--seconds", min=0.2, max=3600.0, help="Length of the clip (at most an hour)."),
    fps: float = typer.Option(25.0, "--fps", min=1.0, max=120.0, help="Frames per second."),
    width: int = typer.Option(640, "--width", min=64, max=7680, help="Frame width in pixels (at most 7680: 8K)."),
    height: int = typer.Option(480, "--height", min=64, max=4320, help="Frame height in pixels (at most 4320: 8K)."),
    faces: int = typer.Option(1, "--faces", min=1, max=6, help="Moving faces in the frame."),
    kind: str = typer.Option("real", "--kind", help="real: the astronaut's photographed face; synth: rendered faces."),
    voice: bool = typer.Option(True, "--voice/--no-voice", help="Mux a voice-like track (audio-visual models need one)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the motion and the voice)."),
) -> None:
    """Write a demo clip made offline: moving faces and a voice track, for `edgeaffect demo --source`.

    Example:  edgeaffect data clip clip.mp4 && edgeaffect demo --model runs/eri/quickstart --source clip.mp4 --headless
    Example:  edgeaffect data clip two.mp4 --faces 2 --seconds 10 --kind synth
    """
    from ..demo.clips import render_clip
    if kind not in ("real", "synth"):
        raise EdgeAffectError(f"--kind {kind!r}: real or synth")
    if out.suffix.lower() != ".mp4":
        raise EdgeAffectError(f"{out}: the clip is an mp4 (H.264 + AAC); name it *.mp4")
    frames = max(1, round(seconds * fps))
    if frames * width * height * 3 > CLIP_MEMORY:
        raise EdgeAffectError(f"{seconds:g} s of {width}x{height} at {fps:g} fps needs "
                              f"{frames * width * height * 3 / 1e9:.1f} GB held in memory (at most "
                              f"{CLIP_MEMORY / 1e9:g} GB): make it shorter or smaller")
    out.parent.mkdir(parents=True, exist_ok=True)
    with progress(console, "data clip", frames) as advance:
        path = render_clip(out, seconds=seconds, fps=fps, size=(width, height), faces=faces, kind=kind,
                           audio=voice, seed=seed, progress=advance)
    typer.echo(f"wrote {path} ({seconds:g} s at {fps:g} fps, {width}x{height}, {faces} face(s)"
               f"{', with voice' if voice else ''})")
