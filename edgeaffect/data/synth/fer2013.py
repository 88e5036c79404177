"""Synthetic FER2013: rendered faces whose geometry follows the 7 FER classes, in fer2013.csv.

Each class sets the renderer's expression parameters (happy: mouth corners up;
sad: down; surprise: brows up, eyes and mouth open; fear: brows up, eyes wide;
angry: brows furrowed; disgust: furrow + upper-lip raise; neutral: rest) with
random identity, pose, light and noise; faces are found by the Haar detector
and cropped to 48x48 grey like the real set.  For calibration and pipeline
tests; the real FER2013 reads through the same reader.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...lazy import lazy_import
from ..faces import crop_face
from ..fer2013 import SIDE, write_fer2013
from . import claim_folder
from .face import Expression, Identity, background, draw_face, finish

cv2 = lazy_import("cv2", "")

CLASS_EXPRESSIONS = {
    0: dict(brow_furrow=0.9, eye_open=0.35, smile=-0.2),                 # angry
    1: dict(brow_furrow=0.6, lip_raise=0.9, smile=-0.3),                 # disgust
    2: dict(brow_raise=0.8, eye_open=0.95, mouth_open=0.3, smile=-0.2),  # fear
    3: dict(smile=0.9, mouth_open=0.2, eye_open=0.4),                    # happy
    4: dict(smile=-0.8, brow_raise=0.3, eye_open=0.3),                   # sad
    5: dict(brow_raise=1.0, eye_open=1.0, mouth_open=0.9),               # surprise
    6: dict(),                                                            # neutral
}


def render_faces(n: int, seed: int = 0, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """(faces uint8 [n, 48, 48], labels [n]) with balanced classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    rng.shuffle(labels)
    faces = np.empty((n, SIDE, SIDE), np.uint8)
    for i, lab in enumerate(labels):
        ident = Identity.random(rng)
        params = {k: float(np.clip(v + rng.normal(0, 0.08), -1, 1)) for k, v in CLASS_EXPRESSIONS[int(lab)].items()}
        expr = Expression(**{"eye_open": 0.5, **params, "head_tilt": float(rng.normal(0, 0.2))})
        img = background(size, size, ident, rng)
        box = draw_face(img, (size / 2 + rng.normal(0, 4), size / 2 + rng.normal(0, 4)), size * 0.62, expr, ident,
                        yaw=float(rng.normal(0, 0.15)))
        img = finish(img, rng, light=float(rng.uniform(0.8, 1.2)))
        faces[i] = cv2.cvtColor(crop_face(img, box, SIDE, 0.1), cv2.COLOR_BGR2GRAY)
    return faces, labels


def generate_fer2013(out: str | Path, n: int = 700, seed: int = 0, overwrite: bool = False) -> Path:
    """Write ``out/fer2013.csv`` with n faces split 70/15/15 Training/PublicTest/PrivateTest."""
    faces, labels = render_faces(n, seed)
    cut1, cut2 = int(n * 0.7), int(n * 0.85)
    usage = ["Training"] * cut1 + ["PublicTest"] * (cut2 - cut1) + ["PrivateTest"] * (n - cut2)
    out = claim_folder(out, "fer2013", overwrite)
    return write_fer2013(out / "fer2013.csv", faces, labels, usage)
