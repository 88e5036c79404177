"""``edgeaffect report RUN``: one self-contained HTML file to share what a run holds and measured."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app


@app.command("report")
def report_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory (holds checkpoint.pt and manifest.json).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file to write (default: RUN/report.html).")] = None,
) -> None:
    """Write one HTML page of a run: model and spec, dataset, training curves, eval per class, bench per machine
    with every batch, accuracy against latency, the precision guard's decisions and the machines.

    Plots are inline images and nothing is loaded from the network: the file can be mailed or attached as it is.
    A section the run has not measured yet names the command that fills it.
    Plots need matplotlib (the plot extra); without it the page has the tables and says so.

    Example:  edgeaffect report runs/eri/exp1 && xdg-open runs/eri/exp1/report.html
    Example:  edgeaffect report runs/eri/exp1 --out share/eri-exp1.html
    """
    from ..report import write_report

    path = write_report(run, out)
    typer.echo(f"wrote {path}")
