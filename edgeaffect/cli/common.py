"""Options shared across commands, and small helpers for console output."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)

SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (results are reproducible for a given seed).")]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Dataset root in the dataset's distributed layout.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda, cuda:1 ...")]
RunArg = Annotated[Path, typer.Argument(help="Run directory (holds checkpoint.pt and manifest.json) or an exported model file.")]


def split_csv(value: str | None) -> list[str]:
    """'a,b , c' -> ['a', 'b', 'c']."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def resume_manifest(resume: Path, task: str) -> dict:
    """The manifest of a run to resume, checked to exist and to belong to ``task``."""
    from ..errors import EdgeAffectError
    from ..fileio import read_json

    manifest = Path(resume) / "manifest.json"
    if not manifest.exists():
        raise EdgeAffectError(f"cannot resume: {manifest} not found")
    m = read_json(manifest)
    if m.get("task") != task:
        raise EdgeAffectError(f"cannot resume: {resume} is a {m.get('task')!r} run, not {task}")
    return m
