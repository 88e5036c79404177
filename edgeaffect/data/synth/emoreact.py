"""Synthetic EmoReact set: a child-like figure reacting with face and body, in the real layout.

Which cue carries which label (so face-only, body-only, full-body and fusion
differ measurably, as in the seed's table):

===========  ===================================================  =====================================
label        face                                                 body
===========  ===================================================  =====================================
Curiosity    -                                                    lean to one side, one arm pointing out
Uncertainty  -                                                    shoulder shrugs, forearms out, palms up
Excitement   open-mouthed smile                                   both arms up and waving, bouncing
Happiness    smile                                                -
Surprise     raised brows, wide eyes, jaw drop                    -
Disgust      upper-lip raise, nose wrinkle, brow furrow           -
Fear         worried brows (raised + furrowed), wide eyes         hands pulled to the chest, trembling
Frustration  -                                                    slumped shoulders, forearms beating down
===========  ===================================================  =====================================

When several body labels are active, the arms follow one of them (by a fixed
priority) while lean, shrug, bounce, trembling and slump add up.  Nuisances independent of the
labels: identity, clothing, body proportions, position, scale, idle sway,
reaction onset and strength, lighting, background, noise.  Videos are H.264
mp4 (data/media.py); the head is the shared face renderer (data/synth/face.py),
so the project's Haar face detector finds it as in real clips.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...fileio import write_text
from ..emoreact import LABELS, SPLIT_FOLDERS
from ..media import write_video
from . import SynthClips, claim_folder, write_clips
from .face import Expression, Identity, background, draw_face, finish

CUR, UNC, EXC, HAP, SUR, DIS, FEA, FRU = range(8)   # label indices in LABELS order
NEUTRAL_ARM = (0.18, 0.25)                           # (shoulder, elbow) angles in radians; 0 = hanging down


@dataclass(frozen=True)
class EmoReactSynthConfig(SynthClips):
    clips: int = 240
    seed: int = 0
    seconds: float = 2.4
    fps: float = 15.0
    width: int = 192
    height: int = 144
    split: tuple[float, float, float] = (0.5, 0.25, 0.25)
    positive_rate: float = 0.2     # each label is on independently with this probability


@dataclass
class Posture:
    """Body pose of one frame (face-local units: head heights)."""

    arms: tuple[tuple[float, float], tuple[float, float]] = (NEUTRAL_ARM, NEUTRAL_ARM)   # (left, right)
    shoulder_raise: float = 0.0
    lean: float = 0.0          # sideways shift of the shoulders relative to the head
    bounce: float = 0.0        # vertical offset of the whole figure
    narrow: float = 0.0        # shoulders pulled in


def sample_labels(rng: np.random.Generator, rate: float) -> np.ndarray:
    return (rng.random(len(LABELS)) < rate).astype(np.float32)


def _ramp(t: float, onset: float) -> float:
    return float(np.clip((t - onset) / 0.5, 0, 1))


def expression_at(y: np.ndarray, g: float, t: float, wob: float) -> Expression:
    return Expression(
        smile=g * (0.9 * y[HAP] + 0.7 * y[EXC] - 0.25 * y[DIS]) + wob,
        mouth_open=g * (0.75 * y[SUR] + 0.5 * y[EXC] + 0.2 * y[FEA]),
        brow_raise=g * (0.9 * y[SUR] + 0.6 * y[FEA]),
        brow_furrow=g * (0.85 * y[DIS] + 0.6 * y[FEA]),
        eye_open=0.5 + g * (0.4 * y[SUR] + 0.35 * y[FEA] - 0.15 * y[DIS]) + wob,
        lip_raise=g * 0.9 * y[DIS],
    )


ARM_PRIORITY = (EXC, FEA, FRU, UNC, CUR)   # the first active label among these moves the arms


def posture_at(y: np.ndarray, g: float, t: float, side: int, phase: float, rng: np.random.Generator) -> Posture:
    """Pose of one frame: the arms follow the first active label of ``ARM_PRIORITY``; lean, shrug,
    bounce, tremble and slump add up, so every body label keeps a cue of its own when labels co-occur."""
    p = Posture()
    w = 2 * np.pi * t
    arms = None
    for k in ARM_PRIORITY:
        if not y[k]:
            continue
        if k == EXC:
            wave = 0.5 * np.sin(3.0 * w + phase)
            arms = ((2.55, wave), (2.55, -wave))
        elif k == FEA:
            arms = ((-0.35, -1.9), (-0.35, -1.9))
        elif k == FRU:
            beat = ((1.8 * t + phase / (2 * np.pi)) % 1.0) ** 3   # slow raise, fast drop
            arms = ((0.45, 0.3 + 1.6 * (1 - beat)),) * 2
        elif k == UNC:
            arms = ((0.3, 1.35), (0.3, 1.35))
        else:
            point = (1.45 + 0.25 * np.sin(0.7 * w + phase), 0.05)
            arms = (point, NEUTRAL_ARM) if side < 0 else (NEUTRAL_ARM, point)
        break
    if arms is not None:
        a = (1 - g) * np.asarray((NEUTRAL_ARM, NEUTRAL_ARM)) + g * np.asarray(arms)
        p.arms = (tuple(a[0]), tuple(a[1]))
    p.lean = g * 0.4 * side * y[CUR]
    p.shoulder_raise = g * (y[UNC] * (0.08 + 0.14 * 0.5 * (1 + np.sin(1.2 * w + phase))) + 0.06 * y[FEA] - 0.12 * y[FRU])
    p.narrow = g * 0.3 * y[FEA]
    p.bounce = g * (0.06 * y[EXC] * np.sin(3.0 * w + phase) + 0.015 * y[FEA] * rng.normal())
    return p


def draw_body(img: np.ndarray, head_c: tuple[float, float], head_h: float, pose: Posture, shirt: tuple,
              skin: tuple, build: float) -> None:
    """Torso (trapezoid to the frame bottom), neck and two two-segment arms with hands."""
    H = img.shape[0]
    cx, cy = head_c
    neck_y = cy + 0.45 * head_h
    sh_y = cy + (0.62 - pose.shoulder_raise) * head_h
    half = (0.62 - 0.12 * pose.narrow) * head_h * build
    lean = pose.lean * head_h
    cv2.rectangle(img, (int(cx - 0.12 * head_h), int(neck_y - 0.1 * head_h)), (int(cx + 0.12 * head_h), int(sh_y + 4)),
                  tuple(int(v * 0.85) for v in skin), -1, cv2.LINE_AA)
    shoulders = [(cx + lean - half, sh_y), (cx + lean + half, sh_y)]
    torso = np.array([shoulders[0], shoulders[1], (cx + 0.5 * lean + 0.9 * half, H + 2),
                      (cx + 0.5 * lean - 0.9 * half, H + 2)], np.int32)
    cv2.fillPoly(img, [torso], shirt, cv2.LINE_AA)
    thick = max(2, int(0.2 * head_h * build))
    l1, l2 = 0.62 * head_h, 0.55 * head_h
    for (sx, sy), side, (a1, a2) in zip(shoulders, (-1, 1), pose.arms):
        ex, ey = sx + side * l1 * np.sin(a1), sy + l1 * np.cos(a1)
        hx, hy = ex + side * l2 * np.sin(a1 + a2), ey + l2 * np.cos(a1 + a2)
        cv2.line(img, (int(sx), int(sy)), (int(ex), int(ey)), shirt, thick, cv2.LINE_AA)
        cv2.line(img, (int(ex), int(ey)), (int(hx), int(hy)), tuple(int(v * 0.9) for v in skin), max(2, thick - 2), cv2.LINE_AA)
        cv2.circle(img, (int(hx), int(hy)), max(2, int(thick * 0.7)), skin, -1, cv2.LINE_AA)


def render_clip(y: np.ndarray, cfg: EmoReactSynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Frames BGR uint8 [N, H, W, 3] of one reaction clip."""
    n = cfg.frame_count
    ident = Identity.random(rng)
    bg = background(cfg.height, cfg.width, ident, rng)
    shirt = tuple(int(c) for c in rng.uniform(30, 230, 3))
    head_h = rng.uniform(0.34, 0.42) * cfg.height
    cx0 = cfg.width / 2 + rng.uniform(-0.1, 0.1) * cfg.width
    cy0 = rng.uniform(0.36, 0.42) * cfg.height
    build = rng.uniform(0.85, 1.15)
    onset = rng.uniform(0.0, 0.35) * cfg.seconds
    strength = rng.uniform(0.6, 1.0)
    side = int(rng.choice([-1, 1]))
    phase = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0.75, 1.2)
    sway = rng.uniform(0.5, 2.0)
    frames = np.empty((n, cfg.height, cfg.width, 3), np.uint8)
    for i in range(n):
        t = i / cfg.fps
        g = strength * _ramp(t, onset)
        wob = rng.normal(0, 0.04)
        pose = posture_at(y, g, t, side, phase, rng)
        cx = cx0 + sway * np.sin(t * 1.3 + phase)
        cy = cy0 + pose.bounce * head_h + 0.5 * np.sin(t * 0.9)
        img = bg.copy()
        draw_body(img, (cx, cy), head_h, pose, shirt, ident.skin, build)
        draw_face(img, (cx, cy), head_h, expression_at(y, g, t, wob), ident, yaw=0.08 * np.sin(t + phase))
        frames[i] = finish(img, rng, light=light, noise=3.0)
    return frames


def valence(y: np.ndarray, rng: np.random.Generator) -> float:
    v = 4.0 + 1.2 * (y[HAP] + y[EXC]) - 1.0 * (y[FEA] + y[FRU] + y[DIS]) + rng.normal(0, 0.4)
    return float(np.round(np.clip(v, 1.0, 7.0), 4))


def _write_one(args) -> None:
    path, y, cfg, seed = args
    write_video(path, render_clip(y, cfg, np.random.default_rng(seed)), cfg.fps)


def generate_emoreact(out: str | os.PathLike, cfg: EmoReactSynthConfig = EmoReactSynthConfig(), workers: int = 1,
                      console=None, overwrite: bool = False) -> Path:
    """Write ``cfg.clips`` clips under ``out/{Train,Validation,Test}/`` and the three CSVs; returns ``out``.

    Deterministic from ``cfg.seed``.  The CSVs are written last, so an
    interrupted run never leaves a CSV that lists clips that are not there.
    """

    out = claim_folder(out, "emoreact", overwrite)
    rng = np.random.default_rng(cfg.seed)
    rows: dict[str, list] = {"train": [], "val": [], "test": []}
    jobs = []
    for i in range(cfg.clips):
        split = cfg.split_of(i)
        y = sample_labels(rng, cfg.positive_rate)
        video = f"SYNTH{i // 3:04d}_{i % 3 + 1}.mp4"
        rows[split].append([len(rows[split]), video, *[int(v) for v in y], f"{valence(y, rng):.4f}"])
        jobs.append((out / SPLIT_FOLDERS[split][0] / video, y, cfg, int(rng.integers(0, 2 ** 31))))
    write_clips(_write_one, jobs, workers, console, "synth emoreact")
    for split, split_rows in rows.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["", "video", *LABELS, "Valence"])
        w.writerows(split_rows)
        write_text(out / f"{split}.csv", buf.getvalue())
    return out
