"""``edgeaffect models``: the model registry as a table."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import app


@app.command("models")
def models_cmd(
    task: Annotated[Optional[str], typer.Option("--task", help="Only models of this task (eri, ravdess, expr, va, body).")] = None,
) -> None:
    """List registered models: name, task, parameter count, inputs and outputs.

    Example:  edgeaffect models --task eri
    """
    from rich.table import Table

    from ..models import count_parameters, create_model, get_entry, list_models
    from .common import Console

    table = Table(title="edgeaffect models")
    for col in ("name", "task", "params", "inputs", "outputs"):
        table.add_column(col, no_wrap=True, justify="right" if col == "params" else "left")
    table.add_column("description", overflow="fold", min_width=30)
    for name in list_models(task):
        model = create_model(name)
        spec = model.spec
        table.add_row(
            name,
            spec.task,
            f"{count_parameters(model):,}",
            "\n".join(t.describe() for t in spec.inputs),
            "\n".join(t.describe() for t in spec.outputs),
            get_entry(name).description,
        )
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    out.print(table)
