"""Synthetic RAVDESS: rendered actors speaking with emotional faces and voices, in the real layout.

Writes ``Actor_XX/01-01-EE-II-SS-RR-XX.mp4`` (full AV: H.264 + AAC) and the matching
``Actor_XX/03-01-EE-II-SS-RR-XX.wav`` (audio-only), as RAVDESS distributes them.

Which modality carries each emotion is chosen so that fusion > video > audio is
measurable (the shape of the seed paper's tables):

- neutral / calm share a face and differ only in the voice;
- angry / disgust and fearful / surprised share a voice and differ only in the face;
- happy and sad differ in both.

A perfect face reader is then right on 7/8 of the classes, a perfect voice reader on
6/8, and only fusion can reach all 8.  Each actor has a fixed look and voice (odd
actors lower-pitched, as RAVDESS's odd actors are male); expressions build up from a
neutral onset and are scaled by the intensity field (01 normal, 02 strong).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ...labels import RAVDESS_LABELS as EMOTIONS
from ..media import write_video, write_wav
from . import claim_folder
from .face import Expression, Identity, background, draw_face
from .voice import Prosody, synth_voice

# Face per emotion (index 0..7).  neutral == calm (voice-only pair).
FACES: dict[int, Expression] = {
    0: Expression(),
    1: Expression(),
    2: Expression(smile=0.9, eye_open=0.4, mouth_open=0.25),
    3: Expression(smile=-0.8, eye_open=0.25, head_tilt=0.35, brow_furrow=0.3),
    4: Expression(brow_furrow=1.0, eye_open=0.75, smile=-0.35),
    5: Expression(brow_raise=0.7, eye_open=0.9, mouth_open=0.3, smile=-0.3, brow_furrow=0.3),
    6: Expression(lip_raise=1.0, brow_furrow=0.5, asym=0.7, eye_open=0.3),
    7: Expression(brow_raise=1.0, eye_open=1.0, mouth_open=0.8),
}

# Voice per emotion, relative to the actor's own pitch.  angry == disgust, fearful == surprised.
_ANGRY = dict(pitch=1.1, pitch_range=0.2, energy=0.95, rate=5.0, tilt=0.7, jitter=0.1)
_FEAR = dict(pitch=1.45, pitch_range=0.35, pitch_slope=0.4, jitter=0.5, energy=0.6, rate=5.5, tremolo=0.25)
VOICES: dict[int, dict] = {
    0: dict(pitch=1.0, pitch_range=0.12, energy=0.5, rate=4.0, tilt=0.0),
    1: dict(pitch=0.88, pitch_range=0.05, energy=0.22, rate=2.6, tilt=-0.5, breath=0.15),
    2: dict(pitch=1.3, pitch_range=0.3, energy=0.75, rate=4.8, tilt=0.3, laugh=0.6),
    3: dict(pitch=0.85, pitch_range=0.05, pitch_slope=-0.35, energy=0.2, rate=2.4, tilt=-0.5, tremolo=0.35),
    4: _ANGRY, 6: _ANGRY,
    5: _FEAR, 7: _FEAR,
}

_BLEND_FIELDS = ("smile", "mouth_open", "brow_raise", "brow_furrow", "eye_open", "lip_raise", "head_tilt", "asym")


def _scaled(expr: Expression, k: float) -> Expression:
    """Expression ``k`` of the way from neutral (eye_open 0.5) to ``expr``."""
    neutral = Expression()
    return Expression(**{f: getattr(neutral, f) + k * (getattr(expr, f) - getattr(neutral, f)) for f in _BLEND_FIELDS})


def ravdess_name(modality: int, emotion: int, intensity: int, statement: int, repetition: int, actor: int,
                 vocal: int = 1) -> str:
    """``MM-VC-EE-II-SS-RR-AA`` (emotion 1..8)."""
    return "-".join(f"{v:02d}" for v in (modality, vocal, emotion, intensity, statement, repetition, actor))


def render_clip(emotion: int, intensity: int, actor_ident: Identity, actor_pitch: float, rng: np.random.Generator,
                seconds: float, fps: float = 30.0, size: tuple[int, int] = (160, 128), sr: int = 22050
                ) -> tuple[np.ndarray, np.ndarray]:
    """(frames [N, H, W, 3] BGR uint8, audio float32) of one utterance; ``emotion`` is 0..7."""
    w, h = size
    n = int(round(seconds * fps))
    strength = (0.6 if intensity == 1 else 1.0) * rng.uniform(0.85, 1.1)
    target = FACES[emotion]
    v = dict(VOICES[emotion])
    pitch = actor_pitch * v.pop("pitch") * rng.uniform(0.95, 1.05)
    # the voice intensity scales the distance from the actor's neutral delivery
    neutral = VOICES[0]
    for key in ("energy", "rate", "pitch_range"):
        v[key] = neutral[key] + strength * (v[key] - neutral[key]) * rng.uniform(0.9, 1.1)
    onset = rng.uniform(0.3, 0.7)
    audio = synth_voice(seconds, sr, Prosody(pitch_hz=pitch, **v), rng, onset=onset)
    syll = v["rate"]
    bg = background(h, w, actor_ident, rng)
    cx, cy = w / 2 + rng.uniform(-6, 6), h / 2 + rng.uniform(-4, 4)
    face_h = h * rng.uniform(0.6, 0.7)
    light = rng.uniform(0.8, 1.15)
    phase = rng.uniform(0, 6.28)
    # sensor noise from a small per-clip bank: drawing fresh Gaussian noise per frame dominated the cost
    noise = rng.standard_normal((4, h, w, 3), dtype=np.float32) * 3.0
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        t = i / fps
        ramp = float(np.clip((t - onset + 0.2) / 0.8, 0, 1))   # expression builds up around the speech onset
        expr = _scaled(target, strength * ramp)
        talking = t > onset
        if talking:  # jaw moves with the syllables (all emotions: not a class cue)
            expr = replace(expr, mouth_open=expr.mouth_open + 0.15 * max(0.0, np.sin(2 * np.pi * syll * t / 2 + phase)))
        img = bg.copy()
        draw_face(img, (cx + 2 * np.sin(0.9 * t + phase), cy + 1.5 * np.sin(1.3 * t)), face_h, expr, actor_ident,
                  yaw=0.15 * np.sin(0.7 * t + phase))
        img = cv2.GaussianBlur(img, (3, 3), 0).astype(np.float32) * light + noise[i % len(noise)]
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames, audio


def generate_ravdess(out: str | Path, actors: int = 24, statements: int = 2, repetitions: int = 1,
                     intensities: int = 1, seed: int = 0, size: tuple[int, int] = (160, 128),
                     fps: float = 30.0, sr: int = 22050, progress=None, overwrite: bool = False) -> list[Path]:
    """Write the synthetic set; returns the written video paths.

    Per actor: every emotion x statement x repetition, at ``intensities`` levels (neutral has
    only the normal one, as in RAVDESS).  Clip lengths vary around 3.6 s (3.2-4.0 s) so the
    reader's pad/crop is exercised.  Deterministic from ``seed`` (each clip has its own stream).
    """
    out = claim_folder(out, "ravdess", overwrite)
    jobs = []
    for a in range(1, actors + 1):
        for e in range(1, 9):
            for i in range(1, (1 if e == 1 else intensities) + 1):
                for s in range(1, statements + 1):
                    for r in range(1, repetitions + 1):
                        jobs.append((a, e, i, s, r))
    written = []
    idents = {a: Identity.random(np.random.default_rng([seed, 1, a])) for a in range(1, actors + 1)}
    for k, (a, e, i, s, r) in enumerate(jobs):
        rng = np.random.default_rng([seed, 2, a, e, i, s, r])
        base_pitch = (115.0 if a % 2 else 205.0) * np.random.default_rng([seed, 3, a]).uniform(0.9, 1.1)
        seconds = float(rng.uniform(3.2, 4.0))
        frames, audio = render_clip(e - 1, i, idents[a], base_pitch, rng, seconds, fps, size, sr)
        folder = out / f"Actor_{a:02d}"
        video = folder / f"{ravdess_name(1, e, i, s, r, a)}.mp4"
        write_video(video, frames, fps, audio=audio, sr=sr)
        write_wav(folder / f"{ravdess_name(3, e, i, s, r, a)}.wav", audio, sr)
        written.append(video)
        if progress is not None:
            progress(k + 1, len(jobs))
    return written
