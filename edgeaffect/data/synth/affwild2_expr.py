"""Synthetic Aff-Wild2 EXPR set in the distributed layout, plus a folder of unlabeled faces.

Written under ``out``::

    cropped_aligned/synth_expr_<split>_<nnn>/00001.jpg ...      (S x S aligned faces)
    EXPR_Classification_Challenge/{Train_Set,Validation_Set}/synth_expr_<split>_<nnn>.txt
    unlabeled/<shard>/<nnnnnn>.jpg                               (faces without labels)

Each video has one random identity and a sequence of expression segments; the
class of a frame is carried only by face geometry (:class:`~edgeaffect.data.synth.face.Expression`):
a class prototype scaled by a random intensity (weak expressions look like
Neutral, which keeps the task learnable but not trivial), plus per-frame jitter,
head pose, lighting, background and noise.  Like the real set, some frames are
unannotated (-1) and some frames have no aligned face (file absent).

Other folders already under ``cropped_aligned/`` (e.g. the VA generator's) are
left alone; our video names carry ``synth_expr``.  Deterministic from ``seed``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ...fileio import atomic_path, write_text
from ..affwild2_expr import EXPR_LABELS
from ..affwild2 import frame_name
from . import claim_folder
from .face import Expression, Identity, background, draw_face, finish

EXPR_DIR = "EXPR_Classification_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set"}

# Prototype geometry of each class (the Neutral face is the zero point; eye_open 0.5 is neutral).
PROTOTYPES: dict[str, dict[str, float]] = {
    "Neutral": {},
    "Anger": {"brow_furrow": 1.0, "eye_open": 0.75, "smile": -0.25},
    "Disgust": {"lip_raise": 1.0, "brow_furrow": 0.45, "eye_open": 0.3, "smile": -0.35},
    "Fear": {"brow_raise": 0.75, "brow_furrow": 0.35, "eye_open": 1.0, "mouth_open": 0.35, "smile": -0.3},
    "Happiness": {"smile": 1.0, "eye_open": 0.35, "mouth_open": 0.25},
    "Sadness": {"smile": -0.9, "brow_raise": 0.35, "eye_open": 0.3, "head_tilt": 0.3},
    "Surprise": {"brow_raise": 1.0, "eye_open": 1.0, "mouth_open": 1.0},
    "Other": {"asym": 1.0, "smile": 0.2, "eye_open": 0.45},
}
# Relative class frequencies (Aff-Wild2 is dominated by Neutral/Other/Happiness; Fear/Disgust are rare).
CLASS_WEIGHTS = np.array([0.22, 0.08, 0.06, 0.06, 0.18, 0.12, 0.10, 0.18])


def expression_for(label: int, intensity: float, rng: np.random.Generator) -> Expression:
    """The class prototype at ``intensity`` (0 = neutral face) with small per-frame jitter."""
    e = Expression()
    for key, value in PROTOTYPES[EXPR_LABELS[label]].items():
        neutral = getattr(Expression(), key)
        setattr(e, key, neutral + intensity * (value - neutral))
    for key, sd in (("smile", 0.08), ("mouth_open", 0.05), ("brow_raise", 0.06), ("brow_furrow", 0.06),
                    ("eye_open", 0.06), ("lip_raise", 0.05), ("asym", 0.05)):
        v = getattr(e, key) + rng.normal(0, sd)
        setattr(e, key, float(np.clip(v, -1 if key == "smile" else 0.0, 1.0)))
    e.head_tilt += float(rng.normal(0, 0.15))
    return e


def render_face(label: int, ident: Identity, rng: np.random.Generator, size: int = 112,
                intensity: float | None = None) -> np.ndarray:
    """One aligned face crop (BGR uint8 [size, size, 3]) showing ``label``."""
    if intensity is None:
        intensity = float(rng.uniform(0.35, 1.0))
    expr = expression_for(label, intensity, rng)
    img = background(size, size, ident, rng)
    center = (size / 2 + rng.normal(0, size * 0.03), size / 2 + rng.normal(0, size * 0.03) + size * 0.04)
    draw_face(img, center, size * rng.uniform(0.78, 0.92), expr, ident, yaw=float(rng.uniform(-0.5, 0.5)))
    return finish(img, rng, light=float(rng.uniform(0.7, 1.25)), noise=float(rng.uniform(2, 7)))


def _write_jpg(path: Path, img: np.ndarray, quality: int = 92) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"cannot write {path}")


def _video_labels(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Segments of 8-30 frames, each of one class; about 4 % of frames unannotated (-1)."""
    labels = np.empty(n_frames, np.int64)
    i = 0
    while i < n_frames:
        seg = int(rng.integers(8, 31))
        labels[i:i + seg] = rng.choice(len(EXPR_LABELS), p=CLASS_WEIGHTS / CLASS_WEIGHTS.sum())
        i += seg
    labels[rng.random(n_frames) < 0.04] = -1
    return labels


@dataclass(frozen=True)
class SynthSummary:
    videos: dict[str, int]
    frames: dict[str, int]          # face images written
    unlabeled: int
    class_counts: dict[str, list[int]]
    no_face: dict[str, int]         # annotated frames without an image (the aligner found no face)


def generate(out: str | os.PathLike, train_videos: int = 24, val_videos: int = 8, frames: int = 60,
             unlabeled: int = 2000, size: int = 112, seed: int = 0,
             progress: Callable[[int], None] | None = None, overwrite: bool = False) -> SynthSummary:
    """Write the set under ``out``; ``progress(n)`` is called with the number of images written."""
    out = claim_folder(out, "affwild2-expr", overwrite)
    counts: dict[str, list[int]] = {}
    n_frames: dict[str, int] = {}
    no_face: dict[str, int] = {}
    for split_id, (split, n_videos) in enumerate((("train", train_videos), ("val", val_videos))):
        label_dir = out / EXPR_DIR / SPLIT_DIRS[split]
        label_dir.mkdir(parents=True, exist_ok=True)
        hist = np.zeros(len(EXPR_LABELS), int)
        written = 0
        for v in range(n_videos):
            rng = np.random.default_rng([seed, split_id, v])
            name = f"synth_expr_{split}_{v:03d}"
            ident = Identity.random(rng)
            labels = _video_labels(frames, rng)
            absent = rng.random(frames) < 0.03           # the aligner found no face in these frames
            vdir = out / "cropped_aligned" / name
            vdir.mkdir(parents=True, exist_ok=True)
            for i, lab in enumerate(labels):
                shown = int(lab) if lab >= 0 else int(labels[i - 1] if i and labels[i - 1] >= 0 else 0)
                img = render_face(shown, ident, rng, size)
                if absent[i]:
                    (vdir / frame_name(i + 1)).unlink(missing_ok=True)
                    continue
                _write_jpg(vdir / frame_name(i + 1), img)
                written += 1
                if lab >= 0:
                    hist[lab] += 1
            write_text(label_dir / f"{name}.txt", ",".join(EXPR_LABELS) + "\n" + "".join(f"{int(x)}\n" for x in labels))
            if progress:
                progress(frames)
        counts[split] = hist.tolist()
        n_frames[split] = written
        no_face[split] = n_videos * frames - written
    ul_dir = out / "unlabeled"
    for k in range(unlabeled):
        rng = np.random.default_rng([seed, 7, k])
        label = int(rng.choice(len(EXPR_LABELS), p=CLASS_WEIGHTS / CLASS_WEIGHTS.sum()))
        img = render_face(label, Identity.random(rng), rng, size)
        _write_jpg(ul_dir / f"{k // 500:03d}" / f"{k:06d}.jpg", img)
        if progress and (k + 1) % 50 == 0:
            progress(50)
    if progress and unlabeled % 50:
        progress(unlabeled % 50)
    return SynthSummary({"train": train_videos, "val": val_videos}, n_frames, unlabeled, counts, no_face)
