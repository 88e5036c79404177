"""``edgeaffect models``: the model registry as a table."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..models import count_parameters, create_model, get_entry, list_models
from . import app
from .common import table_console


@app.command("models")
def models_cmd(
    task: Annotated[Optional[str], typer.Option("--task", help="Only models of this task (eri, ravdess, expr, va, body).")] = None,
) -> None:
    """List registered models: name, task, parameters, GFLOPs per sample, inputs and outputs.

    GFLOPs are 2 x the multiply-accumulates of convs and matmuls at batch 1 and the default sizes
    (counted without running the model; "-" where an op cannot be counted, e.g. an LSTM).

    Example:  edgeaffect models --task eri
    """
    from rich.table import Table

    from ..macs import model_gflops
    table = Table(title="edgeaffect models")
    for col in ("name", "task", "params", "GFLOPs", "inputs", "outputs"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("params", "GFLOPs") else "left")
    table.add_column("description", overflow="fold", min_width=30)
    for name in list_models(task):
        model = create_model(name)
        spec = model.spec
        table.add_row(
            name,
            spec.task,
            f"{count_parameters(model):,}",
            _gflops(model_gflops(lambda: create_model(name))),
            "\n".join(t.describe() for t in spec.inputs),
            "\n".join(t.describe() for t in spec.outputs),
            get_entry(name).description,
        )
    table_console().print(table)


def _gflops(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
