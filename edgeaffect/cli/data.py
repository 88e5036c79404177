"""``edgeaffect data``: dataset utilities; ``data synth <kind>`` writes synthetic sets in real layouts.

Each task's CLI module adds its generator with ``@synth_app.command("<kind>")``.
"""
from __future__ import annotations

import typer

from . import app

data_app = typer.Typer(help="Dataset utilities: synthetic sets in the real layouts, checks.", no_args_is_help=True)
synth_app = typer.Typer(
    help="Write a small synthetic dataset in a real dataset's distributed layout (deterministic from --seed).",
    no_args_is_help=True,
)
data_app.add_typer(synth_app, name="synth")
app.add_typer(data_app, name="data")
