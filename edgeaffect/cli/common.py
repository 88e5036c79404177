"""Options shared across commands, and small helpers for console output."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console  # noqa: F401  (zoo and demo print their tables with it)

from ..data.synth import refuse_few_train_clips
from ..errors import EdgeAffectError
from ..lazy import lazy_import
from ..logs import make_console
from ..quantize.config import MIN_CALIB_SAMPLES

torch = lazy_import("torch", "train")

console = make_console(stderr=True)   # a log file or CI gets unwrapped lines and plain progress lines

SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (results are reproducible for a given seed).")]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Dataset root in the dataset's distributed layout.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda, cuda:1 ...")]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Use files that differ from what the run's manifest lists "
                                                              "(a deliberate edit); normally such a file is refused.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out (its checkpoint, "
                                                                "exported files and manifest entries are removed first).")]
TrustOpt = Annotated[Optional[Path], typer.Option(
    "--trust", envvar="EDGEAFFECT_TRUST", show_envvar=True,
    help="Public key (PEM): refuse a model whose folder is not signed by its private key, or changed since "
         "(see docs/signing.md). Unset: no signature check.")]
SignOpt = Annotated[Optional[Path], typer.Option(
    "--sign", help="Private key (PEM, from `edgeaffect sign keygen`): sign the result (model.sig beside it).")]
SynthOverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the synthetic set of this kind written "
                                                                     "earlier in --out (its clips, labels and caches are "
                                                                     "removed first); without it that is refused.")]
RunArg = Annotated[Path, typer.Argument(help="Run directory (holds checkpoint.pt and manifest.json) or an exported model file.")]

# -- what every ``data synth <task>`` and ``train <task>`` command declares -----------------------------------
# The help of an option whose default or recipe differs per task is the task's (an option built by a function);
# the defaults stay in each command's signature, where its --help shows them.
AllowSmallOpt = Annotated[bool, typer.Option(
    "--allow-small", help="Write a set smaller than the next steps' defaults need (train, export --int8); those steps "
                          "then need smaller settings.")]
SynthWorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Parallel processes.")]
ClipSecondsOpt = Annotated[float, typer.Option("--seconds", min=1.0, help="Clip length in seconds.")]
ResumeOpt = Annotated[Optional[Path], typer.Option("--resume", help="Continue an interrupted run directory (its own "
                                                                    "settings are used).")]
PrepWorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Preprocessing processes.")]


def synth_out_opt(layout: str):
    """``--out`` of ``data synth <task>``: the dataset root it writes, in ``layout``."""
    return Annotated[Path, typer.Option("--out", "-o", help=f"Dataset root to write ({layout}).")]


def clips_opt(fewest: int, split: str):
    """``--clips`` of a clip-set generator: at least ``fewest`` (one per split), split by the shares ``split``."""
    return Annotated[int, typer.Option("--clips", min=fewest, help=f"Number of clips (split {split} train/val/test).")]


def data_opt(layout: str):
    """``--data`` of ``train <task>`` (optional: ``--resume`` reads it from the run)."""
    return Annotated[Optional[Path], typer.Option("--data", "-d", help=layout)]


def run_out_opt(task: str):
    """``--out`` of ``train <task>``: the run directory."""
    return Annotated[Optional[Path], typer.Option("--out", "-o", help=f"Run directory (default runs/{task}/<timestamp>).")]


def cache_opt(what: str, default: str):
    """``--cache`` of ``train <task>``: where preprocessed inputs are kept."""
    return Annotated[Optional[Path], typer.Option("--cache", help=f"{what} cache folder (default {default}).")]


def epochs_opt(help: str | None = None):
    """``--epochs``; ``help`` names the task's recipe (e.g. the reference's count)."""
    return Annotated[int, typer.Option("--epochs", min=1, help=help)]


def batch_size_opt(help: str | None = None):
    """``--batch-size``; ``help`` says what one item of a batch is for the task."""
    return Annotated[int, typer.Option("--batch-size", min=1, help=help)]


def lr_opt(help: str | None = None, minimum: float | None = None):
    """``--lr``; ``help`` names the task's optimizer and schedule."""
    return Annotated[float, typer.Option("--lr", min=minimum, help=help)]


def synth_clip_set(generate: Callable, config, out: Path, *, workers: int, overwrite: bool, allow_small: bool,
                   layout: str) -> None:
    """What the clip-set generators (``data synth eri``, ``data synth body``) share: refuse a set too small for
    ``export --int8`` (unless ``--allow-small``), render ``config`` on ``workers`` processes, say what was written."""
    refuse_few_train_clips(config.clips, config.split[0], MIN_CALIB_SAMPLES, allow_small)
    generate(out, config, workers=workers, console=console, overwrite=overwrite)
    console.print(f"[green]wrote {config.clips} clips to {out}[/]  ({layout})")


def use_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (0 or None: torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def table_console():
    """Standard output for result tables: terminal width on a terminal, 200 columns in a pipe or file."""
    return make_console(stderr=False)


def split_csv(value: str | None) -> list[str]:
    """'a,b , c' -> ['a', 'b', 'c']."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def resume_manifest(resume: Path, task: str) -> dict:
    """The manifest of a run to resume, checked to exist and to belong to ``task``."""
    from ..runs import read_manifest

    manifest = Path(resume) / "manifest.json"
    if not manifest.exists():
        raise EdgeAffectError(f"cannot resume: {manifest} not found")
    m = read_manifest(resume)
    if m.get("task") != task:
        raise EdgeAffectError(f"cannot resume: {resume} is a {m.get('task')!r} run, not {task}")
    return m


def train_command(task: str, build: Callable[[Path, Path], object], *, data: Path | None, out: Path | None,
                  resume: Path | None, summary: Callable[[object, Path], None], overwrite: bool = False) -> None:
    """What every ``train <task>`` command shares: the options (from the flags, or the run to ``--resume``),
    the run directory (default ``runs/<task>/<timestamp>``), training, and the summary.

    ``build(data, out)`` turns the flags into the task's options (checking them); ``summary(manifest, out)``
    prints the result.  An ``--out`` that already holds a run is refused unless ``--overwrite`` (then it is
    cleared once the data have been read, see ``Recipe.run``); one writer at a time (``runs.writer_lock``).
    """
    from ..runs import clear_run, timestamp, writer_lock
    from ..train.recipe import get_recipe

    recipe = get_recipe(task)
    if resume is not None:
        opt = recipe.options.from_dict(resume_manifest(resume, task)["config"]["options"])
        out = resume
    else:
        if data is None:
            raise EdgeAffectError("--data is required (or --resume RUN)")
        out = out or Path("runs") / task / timestamp()
        opt = build(data, out)
    with writer_lock(out, f"edgeaffect train {task}", on_stale=lambda m: console.print(f"[yellow]{m}[/]")):
        if resume is None:
            clear_run(out, overwrite, remove=False)   # refused before any work; removed once the data are read
        manifest = recipe.run(opt, out, resume=resume is not None, console=console, overwrite=overwrite)
    summary(manifest, out)
    say_next(f"edgeaffect export {out} --int8")


def say_next(command: str) -> None:
    """The command a user usually runs after this one (train -> export -> bench -> demo), dimmed."""
    from rich.markup import escape

    console.print(f"[dim]next: {escape(command)}[/]", highlight=False, soft_wrap=True)


def print_run_dir(out: Path) -> None:
    console.print(f"[green]run directory:[/] {out}  (checkpoint.pt, manifest.json)")
