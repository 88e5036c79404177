"""Hume-Reaction (ABAW ERI) as distributed.

Layout::

    <root>/data_info.csv         File_ID, Split, Adoration, Amusement, Anxiety, Disgust, Empathic-Pain, Fear, Surprise
    <root>/{train,val,test}/<File_ID>.mp4   (audio in the mp4's track, or a sibling <File_ID>.wav)

File_IDs are kept as strings (leading zeros matter); split names and header
names match case-insensitively and ignoring spaces/dashes/underscores; test
rows may leave the intensities empty (the challenge withholds them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import ERI_LABELS as LABELS
from .csvtable import norm, read_table, unique_keys

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "devel": "val", "dev": "val", "test": "test", "testing": "test"}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass(frozen=True)
class Clip:
    file_id: str
    split: str                 # train | val | test
    labels: np.ndarray         # [7] float32 in [0, 1]; NaN where withheld
    video: Path | None         # None if the file is absent


def read_data_info(root: str | os.PathLike) -> list[Clip]:
    """Parse ``data_info.csv`` and locate each clip's video; raises DataError with a precise message."""
    root = Path(root)
    csv_path = root / "data_info.csv"
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    if not csv_path.exists():
        raise DataError(f"{csv_path} not found: a Hume-Reaction root holds data_info.csv and train/ val/ test/")
    col, rows = read_table(csv_path, {"fileid": "File_ID", "split": "Split", **{norm(l): l for l in LABELS}})
    folders = _split_folders(root)
    clips = []
    for line_no, row, file_id in unique_keys(csv_path, rows, col["fileid"], "File_ID"):
        split_raw = row[col["split"]].strip()
        split = _SPLIT_ALIASES.get(split_raw.lower())
        if split is None:
            raise DataError(f"{csv_path}:{line_no}: unknown split {split_raw!r} (expected Train, Val or Test)")
        labels = np.full(len(LABELS), np.nan, np.float32)
        for j, name in enumerate(LABELS):
            cell = row[col[norm(name)]].strip()
            if cell == "" and split == "test":
                continue
            try:
                v = float(cell)
            except ValueError:
                raise DataError(f"{csv_path}:{line_no}: {name} value {cell!r} is not a number") from None
            if not (0.0 <= v <= 1.0):
                raise DataError(f"{csv_path}:{line_no}: {name} = {v} is outside [0, 1]")
            labels[j] = v
        clips.append(Clip(file_id, split, labels, _find_video(folders.get(split), file_id)))
    if not clips:
        raise DataError(f"{csv_path} lists no clips")
    return clips


def _split_folders(root: Path) -> dict[str, Path]:
    out = {}
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.lower() in _SPLIT_ALIASES:
            out.setdefault(_SPLIT_ALIASES[entry.name.lower()], entry)
    return out


def _find_video(folder: Path | None, file_id: str) -> Path | None:
    if folder is None:
        return None
    for suf in VIDEO_SUFFIXES:
        p = folder / f"{file_id}{suf}"
        if p.exists():
            return p
    return None
