"""The options every task's ``data synth`` and ``train`` commands share are declared once (cli/common.py), and each
task keeps its own defaults."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from edgeaffect.cli import app

TASKS = ("eri", "expr", "va", "ravdess", "body")
CLI = Path(__file__).resolve().parents[1] / "edgeaffect" / "cli"

# Each train command's defaults as they were before the options were shared: (epochs, batch size, lr, seed).
TRAIN_DEFAULTS = {"eri": (20, 16, 2e-3, 0), "expr": (10, 16, 1e-3, 0), "va": (10, 8, 1e-3, 0),
                  "ravdess": (100, 8, 0.04, 1), "body": (12, 8, 0.01, 42)}


def _params(*path: str) -> dict:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {opt: p for p in command.params for opt in p.opts}


@pytest.mark.parametrize("task", TASKS)
def test_each_train_command_keeps_its_defaults(task):
    p = _params("train", task)
    assert tuple(p[o].default for o in ("--epochs", "--batch-size", "--lr", "--seed")) == TRAIN_DEFAULTS[task]
    assert p["--resume"].default is None and p["--out"].default is None
    assert f"runs/{task}/<timestamp>" in p["--out"].help                  # the run directory names its task
    assert p["--epochs"].min == 1 and p["--batch-size"].min == 1


@pytest.mark.parametrize("task, workers", [("eri", 2), ("body", 1)])
def test_preprocessing_workers_keep_their_defaults(task, workers):
    assert _params("train", task)["--workers"].default == workers


@pytest.mark.parametrize("task, clips, seconds, fewest", [("eri", 300, 4.0, 3), ("body", 240, 2.4, 4)])
def test_clip_set_generators_keep_their_defaults(task, clips, seconds, fewest):
    p = _params("data", "synth", task)
    assert (p["--clips"].default, p["--seconds"].default, p["--workers"].default) == (clips, seconds, 2)
    assert p["--clips"].min == fewest and not p["--allow-small"].default


@pytest.mark.parametrize("task", TASKS)
def test_task_modules_declare_no_shared_option_inline(task):
    """--epochs, --batch-size, --lr, --resume, --allow-small are spelled in cli/common.py only (va once derived
    them from the parameter names: a bare ``typer.Option(`` for epochs / batch_size / lr counts too)."""
    source = (CLI / f"{task}.py").read_text(encoding="utf-8")
    for option in ("--epochs", "--batch-size", "--lr", "--resume", "--allow-small"):
        assert f'"{option}"' not in source, f"cli/{task}.py declares {option} itself"
    assert not re.search(r"^\s*(epochs|batch_size|lr|resume): Annotated\[", source, re.M)
