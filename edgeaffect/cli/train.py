"""``edgeaffect train <task>``: full-precision training; each task's CLI module adds its command."""
from __future__ import annotations

import typer

from . import app

train_app = typer.Typer(help="Train a full-precision PyTorch model on a dataset in its real layout.", no_args_is_help=True)
app.add_typer(train_app, name="train")
