"""Synthetic datasets written in the real layouts (rendered faces and bodies, voice-like audio)."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...errors import EdgeAffectError
from ...logs import make_progress

MARKER = ".edgeaffect-synth"


@dataclass(frozen=True)
class SynthClips:
    """A synthetic clip set: ``clips`` clips of ``seconds`` at ``fps``, ``width`` x ``height`` pixels, split
    train/val/test in clip order by the shares in ``split``; deterministic from ``seed``.  Each clip-set
    generator subclasses it with its set's defaults and what only it has."""

    clips: int
    seed: int
    seconds: float
    fps: float
    width: int
    height: int
    split: tuple[float, float, float]

    @property
    def frame_count(self) -> int:
        """Frames in one clip."""
        return int(round(self.seconds * self.fps))

    def split_of(self, i: int) -> str:
        """``train``, ``val`` or ``test`` for clip ``i``: the first share of the clips trains, the next validates."""
        n_train = int(round(self.clips * self.split[0]))
        n_val = int(round(self.clips * self.split[1]))
        return "train" if i < n_train else "val" if i < n_train + n_val else "test"


def claim_folder(out: str | os.PathLike, kind: str, overwrite: bool = False) -> Path:
    """Make ``out`` a synthetic set's folder, refusing one that holds anything else.

    Our sets use the real datasets' file names, so writing into a real dataset would
    overwrite its recordings and mix rendered clips into its annotations. A new or empty
    folder is claimed (MARKER records the kind); another generator's set may share it (the
    two Aff-Wild2 sets share a root). A set of the same kind written earlier is replaced only
    with ``overwrite``, and then entirely (clips, labels, caches), so no old clip outlives it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgeAffectError(f"{out} is a file; --out takes a folder")
    marker = out / MARKER
    if out.exists() and not marker.exists() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise EdgeAffectError(f"{out} holds files that `edgeaffect data synth` did not write (a real dataset?); "
                              "nothing was written: choose a new or empty folder")
    kinds = marker.read_text().split() if marker.exists() else []
    if kind in kinds:
        _replace_set(out, kind, kinds, overwrite)
        kinds = []
    out.mkdir(parents=True, exist_ok=True)
    if kind not in kinds:
        marker.write_text("\n".join([*kinds, kind]) + "\n")
    return out


def _replace_set(out: Path, kind: str, kinds: list[str], overwrite: bool) -> None:
    """Empty ``out`` for a new ``kind`` set, or refuse: without ``overwrite``, or when other sets share it."""
    if not overwrite:
        raise EdgeAffectError(f"{out} already holds a synthetic {kind} set written earlier; replace it with "
                              "--overwrite, or choose another --out")
    others = [k for k in kinds if k != kind]
    if others:
        raise EdgeAffectError(f"{out} also holds the synthetic {', '.join(others)} set, which shares its files: "
                              f"--overwrite cannot replace the {kind} set alone; remove {out} or choose another --out")
    for p in out.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def refuse_small(option: str, value: int, minimum: int, why: str, allow: bool = False, shown: str | None = None) -> None:
    """One line, before anything is written, when ``value`` is below what a next step needs (unless ``allow``);
    ``shown`` says the value where it is not one option's (a product of two)."""
    if value < minimum and not allow:
        raise EdgeAffectError(f"{shown or f'{option} {value}'} is too small: {why}; use {option} {minimum} or more "
                              "(--allow-small writes it anyway, for smaller train settings)")


def smallest_total(share: float, need: int) -> int:
    """The fewest items whose ``round(n * share)`` (how the generators split) reaches ``need``."""
    n = need
    while int(round(n * share)) < need:
        n += 1
    return n


def write_clips(write_one, jobs: list, workers: int, console, title: str) -> None:
    """Run ``write_one(job)`` for every job under a progress bar, in ``workers`` processes when > 1."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..preprocess import parallel_map

    with make_progress(console, title, TextColumn(f"[bold]{title}[/]"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn()) as progress:
        bar = progress.add_task("clips", total=len(jobs))
        for _ in parallel_map(write_one, jobs, workers):
            progress.advance(bar)


def refuse_few_train_clips(clips: int, train_share: float, need: int, allow: bool = False) -> None:
    """``refuse_small`` for a clip set: its train split must hold the ``need`` samples ``export --int8`` calibrates on."""
    refuse_small("--clips", clips, smallest_total(train_share, need),
                 f"{train_share:.0%} of the clips are train clips and `export --int8` calibrates on at least "
                 f"{need} of them", allow)
