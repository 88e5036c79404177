"""Aff-Wild2 EXPR (ABAW expression classification) reader, and a folder of unlabeled faces.

Layout as distributed::

    cropped_aligned/<video>/00001.jpg ...                                   (112x112 aligned faces)
    EXPR_Classification_Challenge/{Train_Set,Validation_Set}/<video>.txt

A label file holds the header ``Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other``
then one integer per frame (0..7, -1 = unannotated); ABAW2's files have the same header without
``Other`` and hold 0..6 (read the same way, the classes keep their indices).  Line i after the header
is frame i (from 1), i.e. ``cropped_aligned/<video>/%05d.jpg``; frames the
aligner failed on are absent from ``cropped_aligned`` and are skipped.

Bad input never stops a whole split: a bad label line (a label 8, a word) is
reported as ``file:line``, counted and read as -1; a file with an unknown header
or a missing frame folder is reported as one line and only that video is left out;
an unreadable image is counted and replaced by the next readable sample, so
batches keep their size.  The 2.7 M real frames are many near-duplicates, so
``frame_step``/``max_per_video`` subsample each video evenly.

Nothing here imports torch: the datasets are plain map-style objects that
``torch.utils.data.DataLoader`` collates (NumPy arrays become tensors).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import EXPR_LABELS, EXPR_LABELS_ABAW2
from .affwild2 import list_frames, read_face, read_label_table

EXPR_DIR = "EXPR_Classification_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_label_file(path: str | os.PathLike, problems: list[str] | None = None) -> np.ndarray:
    """Per-frame labels (int64, -1 = ignore) of one EXPR label file.

    Reads the 8-class header and ABAW2's 7-class one (the same classes without ``Other``; its files
    hold 0..6).  A bad line raises DataError naming ``file:line`` unless ``problems`` is given: then the
    line is appended there and read as -1, so the other frames keep their line numbers.  A bad header
    still raises: without it no line can be read.
    """
    header, rows = read_label_table(path, EXPR_LABELS, EXPR_LABELS_ABAW2)
    out = []
    for lineno, text in rows:
        try:
            value = int(text)
            if not -1 <= value < len(header):
                raise DataError(f"{path}:{lineno}: label {value} outside -1..{len(header) - 1}"
                                + (" (7-class ABAW2 header)" if len(header) == 7 else ""))
        except (ValueError, DataError) as exc:
            msg = str(exc) if isinstance(exc, DataError) else f"{path}:{lineno}: {text!r} is not an integer label"
            if problems is None:
                raise DataError(msg) from None
            problems.append(f"{msg}; line ignored")
            value = -1
        out.append(value)
    return np.asarray(out, np.int64)


@dataclass
class ExprIndex:
    """The labeled frames of one split (after skipping -1, absent frames and bad videos)."""

    paths: list[Path]
    labels: np.ndarray
    video_ids: np.ndarray
    videos: list[str]
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(EXPR_LABELS)).tolist()


def _even_pick(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, k).round().astype(int)) if n > k else np.arange(n)


def index_split(root: str | os.PathLike, split: str, frame_step: int = 1, max_per_video: int | None = None) -> ExprIndex:
    """Index ``split`` (``train`` or ``val``) of an Aff-Wild2 root; see the module docstring."""
    root = Path(root)
    if split not in SPLIT_DIRS:
        raise DataError(f"unknown EXPR split {split!r}; choose one of {', '.join(SPLIT_DIRS)}")
    if frame_step < 1:
        raise DataError(f"frame step must be >= 1, got {frame_step}")
    label_dir = root / EXPR_DIR / SPLIT_DIRS[split]
    if not label_dir.is_dir():
        raise DataError(f"{root} has no {EXPR_DIR}/{SPLIT_DIRS[split]}/ folder: not an Aff-Wild2 EXPR root")
    files = sorted(p for p in label_dir.iterdir() if p.suffix.lower() == ".txt")
    if not files:
        raise DataError(f"no <video>.txt label files in {label_dir}")
    paths: list[Path] = []
    labels: list[int] = []
    vids: list[int] = []
    videos: list[str] = []
    problems: list[str] = []
    counts = {"label_files": len(files), "videos": 0, "bad_videos": 0, "bad_lines": 0, "ignored": 0, "absent": 0, "subsampled_out": 0}
    for f in files:
        try:
            bad_lines: list[str] = []
            lab = read_label_file(f, bad_lines)
            frames = list_frames(root / "cropped_aligned" / f.stem)
        except DataError as exc:
            problems.append(f"{exc}; video left out")
            counts["bad_videos"] += 1
            continue
        problems += bad_lines
        counts["bad_lines"] += len(bad_lines)
        keep = [(i, int(y)) for i, y in enumerate(lab, start=1) if y >= 0 and i in frames]
        counts["ignored"] += int((lab < 0).sum())
        counts["absent"] += sum(1 for i, y in enumerate(lab, start=1) if y >= 0 and i not in frames)
        chosen = keep[::frame_step]
        if max_per_video is not None:
            chosen = [chosen[j] for j in _even_pick(len(chosen), max_per_video)]
        counts["subsampled_out"] += len(keep) - len(chosen)
        vid = len(videos)
        videos.append(f.stem)
        for i, y in chosen:
            paths.append(frames[i])
            labels.append(y)
            vids.append(vid)
    counts["videos"] = len(videos)
    counts["frames"] = len(paths)
    if not paths:
        detail = f" ({problems[0]})" if problems else ""
        raise DataError(f"no usable labeled frames in {label_dir}{detail}")
    return ExprIndex(paths, np.asarray(labels, np.int64), np.asarray(vids, np.int64), videos, problems, counts)


def list_images(root: str | os.PathLike) -> list[Path]:
    """Every jpg/png under ``root`` (any nesting), in a stable sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"unlabeled face folder {root} does not exist")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        out.extend(Path(dirpath) / n for n in sorted(filenames)
                   if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))
    if not out:
        raise DataError(f"no .jpg/.png face images under {root}")
    return out


def labeled_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a class-stratified random ``fraction`` of the samples (at least one per present class)."""
    if not 0 < fraction <= 1:
        raise DataError(f"label fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if fraction == 1:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 5])
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(idx))))
        picked.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picked))


class FaceImages:
    """Aligned faces as ``{"face": float32 [3, S, S] RGB in [0, 1], "target": int64, "index": int64}``.

    ``targets`` may be -1 (unlabeled).  An unreadable image is counted in ``bad``
    and replaced by the next readable one.
    """

    def __init__(self, paths: list[Path], targets: np.ndarray | None = None, size: int = 112):
        self.paths = list(paths)
        self.targets = np.full(len(self.paths), -1, np.int64) if targets is None else np.asarray(targets, np.int64)
        if len(self.targets) != len(self.paths):
            raise ValueError("paths and targets differ in length")
        self.size = size
        self.bad: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> np.ndarray:
        """Face ``i`` as float32 [3, S, S] RGB in [0, 1]."""
        img = read_face(self.paths[i], self.size)
        return np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)

    def __getitem__(self, i: int) -> dict:
        for k in range(len(self.paths)):
            j = (int(i) + k) % len(self.paths)
            try:
                face = self.load(j)
            except DataError as exc:
                self.bad[str(self.paths[j])] = str(exc)
                continue
            return {"face": face, "target": self.targets[j], "index": np.int64(j)}
        raise DataError(f"none of the {len(self.paths)} images could be read (first: {self.paths[0]})")


def expr_split(root: str | os.PathLike, split: str, size: int, frame_step: int = 1, max_per_video: int | None = None,
               val_frame_step: int | None = None, label_fraction: float = 1.0, label_seed: int = 0):
    """(faces, index, chosen indices into the index) of one split with a run's reader options.

    ``train`` keeps the class-stratified ``label_fraction`` drawn with ``label_seed``; other splits keep every
    ``val_frame_step``-th frame (``frame_step`` when not given).
    """
    if split == "train":
        index = index_split(root, split, frame_step, max_per_video)
        chosen = labeled_subset(index.labels, label_fraction, label_seed)
    else:
        index = index_split(root, split, val_frame_step or frame_step)
        chosen = np.arange(len(index))
    return FaceImages([index.paths[i] for i in chosen], index.labels[chosen], size), index, chosen
