"""``edgeaffect zoo``: pretrained models from installed packages, imported as run directories."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app

zoo_app = typer.Typer(help="Pretrained models shipped by installed packages (no downloads).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list")
def zoo_list() -> None:
    """List the zoo models, whether their package is installed, and how to install it.

    Example:  edgeaffect zoo list
    """
    from rich.table import Table

    from .. import zoo
    from .common import Console

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
) -> None:
    """Write a zoo model as a run directory (checkpoint.pt + manifest.json) for export, bench and demo.

    Example:  edgeaffect zoo import fer2013 --out runs/zoo/fer2013
    """
    from .. import zoo
    from .common import console

    path = zoo.import_model(name, out)
    console.print(f"[green]imported[/] {name} -> {path}")
