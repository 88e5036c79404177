"""Demo and benchmark clips made offline: real faces (images scikit-image ships) or rendered faces, with voice.

``real`` clips paste the astronaut's face (``skimage.data.astronaut()``, a real
photograph the Haar detector finds) onto a rendered background and move it;
``synth`` clips draw the project's rendered faces with changing expressions.
Both carry a voice-like audio track, so audio-visual models get real input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.faces import HaarFaceDetector, square_box
from ..data.media import write_video
from ..data.synth.voice import Prosody, synth_voice
from ..lazy import lazy_import

cv2 = lazy_import("cv2", "")


def astronaut_face(size: int = 180) -> np.ndarray:
    """The astronaut's face and some context as a BGR square of ``size`` pixels."""
    from skimage import data

    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    boxes = HaarFaceDetector().detect(img)
    x, y, w, h = square_box(boxes[0] if boxes else (176, 65, 96, 96), 0.45, img.shape)
    return cv2.resize(img[y:y + h, x:x + w], (size, size), interpolation=cv2.INTER_AREA)


def render_clip(path: str | Path, seconds: float = 4.0, fps: float = 25.0, size: tuple[int, int] = (640, 480),
                faces: int = 1, kind: str = "real", audio: bool = True, sample_rate: int = 16000,
                seed: int = 0, progress=None) -> Path:
    """Write an H.264 mp4 (+ AAC voice) with ``faces`` moving faces; returns the path.

    The frames are held in memory until written (``seconds * fps * w * h * 3`` bytes); ``progress()`` is
    called once per frame rendered."""
    from ..data.synth.face import Expression, Identity, background, draw_face, finish
    rng = np.random.default_rng(seed)
    w, h = size
    n = max(1, int(round(seconds * fps)))
    bg = background(h, w, Identity.random(rng), rng)
    face_px = int(min(h * 0.5, w / (faces + 0.5)))
    real = astronaut_face(face_px) if kind == "real" else None
    idents = [Identity.random(rng) for _ in range(faces)]
    phases = rng.uniform(0, 2 * np.pi, faces)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = bg.copy()
        t = i / fps
        for k in range(faces):
            cx = (k + 0.75) * w / (faces + 0.5) + 12 * np.sin(2 * np.pi * 0.3 * t + phases[k])
            cy = h / 2 + 8 * np.cos(2 * np.pi * 0.25 * t + phases[k])
            if real is not None:
                x0, y0 = int(cx - face_px / 2), int(cy - face_px / 2)
                x0, y0 = min(max(x0, 0), w - face_px), min(max(y0, 0), h - face_px)
                img[y0:y0 + face_px, x0:x0 + face_px] = real
            else:
                s = np.sin(2 * np.pi * 0.2 * t + phases[k])
                expr = Expression(smile=float(s), mouth_open=float(max(0.0, -s) * 0.6), brow_raise=float(max(0.0, -s)))
                draw_face(img, (cx, cy), face_px * 0.8, expr, idents[k])
        frames[i] = finish(img, rng, noise=2.0)
        if progress:
            progress()
    voice = synth_voice(seconds, sample_rate, Prosody(), rng) if audio else None
    write_video(path, frames, fps, voice, sample_rate)
    return Path(path)
