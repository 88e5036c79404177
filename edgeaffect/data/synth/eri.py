"""Synthetic Hume-Reaction set: rendered reacting faces with a voice, in the real layout.

Which cue carries which intensity (so fusion, video-only and audio-only differ
measurably, as in the seed's table):

==============  =========================================  =======================================
label           face                                       voice
==============  =========================================  =======================================
Adoration       soft smile, head tilt, softer eyes          -
Amusement       smile + rhythmic mouth opening (laugh)      laugh bursts
Anxiety         -                                           pitch jitter, tremolo, faster rate
Disgust         upper-lip raise, nose wrinkle, brow furrow  -
Empathic-Pain   -                                           low energy, falling pitch, dark, slow
Fear            raised brows, wide eyes, slight opening     high pitch, breathiness
Surprise        raised brows, wide eyes, jaw drop (onset)   rising pitch, wide pitch range
==============  =========================================  =======================================

Nuisances independent of the labels: identity, voice base pitch, head
position, scale and motion, yaw, lighting, background, noise, reaction onset.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...fileio import write_text
from ..hume import LABELS
from ..media import write_video, write_wav
from . import SynthClips, claim_folder, write_clips
from .face import Expression, Identity, background, draw_face, finish
from .voice import Prosody, synth_voice

A, M, X, D, P, F, S = range(7)  # label indices in LABELS order


@dataclass(frozen=True)
class ERISynthConfig(SynthClips):
    clips: int = 300
    seed: int = 0
    seconds: float = 4.0
    fps: float = 25.0
    width: int = 320
    height: int = 240
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    sample_rate: int = 16000
    wav_fraction: float = 0.1   # clips whose audio ships as a sibling .wav instead of the mp4 track


def sample_intensities(rng: np.random.Generator) -> np.ndarray:
    """Sparse-ish intensities in [0, 1]: most reactions are strong in a few emotions only."""
    y = rng.uniform(0, 1, len(LABELS)) ** 1.5
    y[rng.random(len(LABELS)) < 0.35] *= 0.15
    return np.round(y.astype(np.float32), 4)


def expression_track(y: np.ndarray, n: int, fps: float, rng: np.random.Generator) -> list[Expression]:
    """Per-frame expressions: neutral until a random onset, then ramping to the label-driven pose."""
    onset = rng.uniform(0.1, 0.4) * n / fps
    tilt_dir = rng.choice([-1.0, 1.0])
    out = []
    for i in range(n):
        t = i / fps
        g = float(np.clip((t - onset) / 0.6, 0, 1))
        laugh = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t)) if t > onset else 0.0
        wob = rng.normal(0, 0.04)
        out.append(Expression(
            smile=g * (0.85 * y[M] + 0.5 * y[A]) + wob,
            mouth_open=g * (0.6 * y[S] + 0.25 * y[F]) + g * 0.5 * y[M] * laugh,
            brow_raise=g * (0.8 * y[S] + 0.5 * y[F]),
            brow_furrow=g * 0.85 * y[D],
            eye_open=0.5 + g * (0.4 * y[S] + 0.3 * y[F] - 0.3 * y[A]) + wob,
            lip_raise=g * 0.9 * y[D],
            head_tilt=g * 0.7 * y[A] * tilt_dir,
        ))
    return out


def prosody_for(y: np.ndarray, rng: np.random.Generator) -> Prosody:
    base = rng.uniform(100, 230)
    return Prosody(
        pitch_hz=base * (1 + 0.35 * y[F] + 0.15 * y[X] - 0.1 * y[P]),
        pitch_range=0.08 + 0.25 * y[S],
        pitch_slope=0.5 * y[S] - 0.45 * y[P],
        jitter=0.8 * y[X] + 0.3 * y[F],
        tremolo=0.7 * y[X],
        energy=float(np.clip(0.75 - 0.6 * y[P] + 0.15 * y[M] + rng.normal(0, 0.05), 0.05, 1)),
        rate=3.5 + 2.5 * y[X] - 1.5 * y[P] + rng.normal(0, 0.2),
        tilt=0.3 * y[F] - 0.5 * y[P],
        breath=0.04 + 0.25 * y[F],
        laugh=0.9 * y[M],
    )


def render_clip(y: np.ndarray, cfg: ERISynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frames BGR uint8 [N, H, W, 3], audio float32) for one reaction clip."""
    n = cfg.frame_count
    ident = Identity.random(rng)
    bg = background(cfg.height, cfg.width, ident, rng)
    size = rng.uniform(0.45, 0.7) * cfg.height
    cx0 = cfg.width / 2 + rng.uniform(-0.15, 0.15) * cfg.width
    cy0 = cfg.height / 2 + rng.uniform(-0.08, 0.08) * cfg.height
    yaw0 = rng.uniform(-0.4, 0.4)
    light = rng.uniform(0.7, 1.2)
    drift = rng.normal(0, 1.5, 2)
    frames = np.empty((n, cfg.height, cfg.width, 3), np.uint8)
    for i, expr in enumerate(expression_track(y, n, cfg.fps, rng)):
        img = bg.copy()
        cx = cx0 + drift[0] * np.sin(i / 17) * 3
        cy = cy0 + drift[1] * np.sin(i / 11) * 2
        draw_face(img, (cx, cy), size * (1 + 0.03 * np.sin(i / 23)), expr, ident, yaw=yaw0 + 0.1 * np.sin(i / 29))
        frames[i] = finish(img, rng, light=light)
    audio = synth_voice(cfg.seconds, cfg.sample_rate, prosody_for(y, rng), rng, onset=rng.uniform(0.1, 0.5))
    return frames, audio


def _write_one(args) -> None:
    out, split_dir, file_id, y, cfg, seed, as_wav = args
    rng = np.random.default_rng(seed)
    frames, audio = render_clip(y, cfg, rng)
    video_path = Path(out) / split_dir / f"{file_id}.mp4"
    if as_wav:
        write_video(video_path, frames, cfg.fps)
        write_wav(video_path.with_suffix(".wav"), audio, cfg.sample_rate)
    else:
        write_video(video_path, frames, cfg.fps, audio=audio, sr=cfg.sample_rate)


def generate_eri(out: str | os.PathLike, cfg: ERISynthConfig = ERISynthConfig(), workers: int = 1,
                 console=None, overwrite: bool = False) -> Path:
    """Write ``cfg.clips`` clips and ``data_info.csv`` under ``out``; returns ``out``.

    Deterministic from ``cfg.seed``.  ``data_info.csv`` is written last, so an
    interrupted run never leaves a CSV that lists clips that are not there.
    """

    out = claim_folder(out, "eri", overwrite)
    rng = np.random.default_rng(cfg.seed)
    rows, jobs = [], []
    for i in range(cfg.clips):
        split = cfg.split_of(i).capitalize()   # data_info.csv's Train / Val / Test
        file_id = f"{i:05d}"
        y = sample_intensities(rng)
        seed = int(rng.integers(0, 2 ** 31))
        as_wav = bool(rng.random() < cfg.wav_fraction)
        rows.append([file_id, split, *[f"{v:.4f}" for v in y]])
        jobs.append((str(out), split.lower(), file_id, y, cfg, seed, as_wav))
    write_clips(_write_one, jobs, workers, console, "synth eri")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["File_ID", "Split", *LABELS])
    w.writerows(rows)
    write_text(out / "data_info.csv", buf.getvalue())
    return out
