"""Synthetic Aff-Wild2 valence-arousal set in the distributed layout.

Written under ``out``::

    cropped_aligned/synth_va_<split>_<nnn>[_left|_right]/00001.jpg ...   (S x S aligned faces)
    VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt        (header "valence,arousal", rows "v,a")
    videos/synth_va_<split>_<nnn>.mp4                                     (raw video, H.264 + AAC 44.1 kHz)

Valence and arousal are smooth random curves in [-1, 1].  Valence is carried
mostly by the face (mouth curvature, furrowed brows) and weakly by the voice's
pitch slope; arousal by the voice (loudness, syllable rate, pitch, brightness)
and partly by the face (eye and mouth opening, head motion), so fusion beats
either modality alone.  As in the real set, some frames have no aligned face
(file absent) and some rows are invalid (``-5,-5``); one video per split is a
two-person ``_left``/``_right`` pair sharing its base video's audio.

Other folders already under ``cropped_aligned/`` (e.g. the EXPR generator's)
are left alone; ours carry ``synth_va`` and are rewritten identically for the
same seed.  Deterministic from ``seed``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ...fileio import write_bytes, write_text
from ..affwild2 import frame_name
from ..media import write_video
from . import claim_folder
from .face import Expression, Identity, background, draw_face, finish
from .voice import Prosody, synth_voice

VA_DIR = "VA_Estimation_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set"}
SAMPLE_RATE = 44100
FPS = 30.0


@dataclass(frozen=True)
class SynthSummary:
    videos: dict[str, list[str]]
    frames: dict[str, int]
    invalid_rows: dict[str, int]


def smooth_curve(n: int, fps: float, rng: np.random.Generator, amp: float = 0.85) -> np.ndarray:
    """A slowly varying curve in [-1, 1]: a few low-frequency sinusoids around a random offset."""
    t = np.arange(n) / fps
    y = np.full(n, rng.uniform(-0.3, 0.3))
    for _ in range(3):
        y += rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * rng.uniform(0.03, 0.2) * t + rng.uniform(0, 2 * np.pi))
    y = y / (np.abs(y).max() + 1e-9) * amp * rng.uniform(0.7, 1.0)
    return np.clip(y, -1, 1)


def face_expression(v: float, a: float, rng: np.random.Generator, talk: float) -> Expression:
    """Face geometry for one frame: valence -> smile/brows, arousal -> eyes/mouth opening."""
    return Expression(
        smile=float(np.clip(0.9 * v + rng.normal(0, 0.08), -1, 1)),
        brow_furrow=float(np.clip(0.7 * max(-v, 0.0) + rng.normal(0, 0.05), 0, 1)),
        brow_raise=float(np.clip(0.3 * max(a, 0.0) + rng.normal(0, 0.05), 0, 1)),
        eye_open=float(np.clip(0.5 + 0.35 * a + rng.normal(0, 0.05), 0, 1)),
        mouth_open=float(np.clip(0.15 + 0.25 * a, 0, 1) * talk),
    )


def voice_track(valence: np.ndarray, arousal: np.ndarray, fps: float, sr: int, base_pitch: float,
                rng: np.random.Generator, chunk: float = 0.5) -> np.ndarray:
    """Voice whose prosody follows arousal (and weakly valence), rendered in short cross-faded chunks."""
    n_frames = len(arousal)
    total = int(round(n_frames / fps * sr))
    out = np.zeros(total + int(chunk * sr) * 2, np.float32)
    step = int(chunk * sr)
    fade = int(0.03 * sr)
    ramp = np.ones(step + fade, np.float32)
    ramp[:fade] = np.linspace(0, 1, fade)
    ramp[-fade:] = np.linspace(1, 0, fade)
    for s0 in range(0, total, step):
        i = min(int((s0 + step / 2) / sr * fps), n_frames - 1)
        a, v = float(arousal[i]), float(valence[i])
        p = Prosody(pitch_hz=base_pitch * (1 + 0.25 * a), pitch_range=0.1 + 0.1 * max(a, 0), pitch_slope=0.3 * v,
                    energy=0.5 + 0.45 * a, rate=4.0 + 2.0 * a, tilt=0.5 * a, breath=0.05)
        seg = synth_voice((step + fade) / sr, sr, p, rng)
        out[s0:s0 + step + fade] += seg * ramp
    return np.clip(out[:total], -1, 1)


def _write_jpg(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    write_bytes(path, buf.tobytes())


def _render_person(valence, arousal, voice_env, size, rng, vdir: Path, absent: np.ndarray,
                   progress: Callable[[int], None] | None) -> np.ndarray:
    """Render and write one person's aligned faces; returns the frames (absent ones included) for the raw video."""
    ident = Identity.random(rng)
    bg = background(size, size, ident, rng)
    vdir.mkdir(parents=True, exist_ok=True)
    frames = np.empty((len(valence), size, size, 3), np.uint8)
    pos = np.zeros(2)
    for i, (v, a) in enumerate(zip(valence, arousal)):
        motion = 0.4 + 1.6 * (a + 1) / 2            # livelier head motion when aroused
        pos = 0.85 * pos + rng.normal(0, motion, 2)
        talk = 0.5 + 0.5 * float(voice_env[i])
        img = bg.copy()
        draw_face(img, (size / 2 + pos[0], size / 2 + 2 + pos[1]), size * 0.82,
                  face_expression(float(v), float(a), rng, talk), ident, yaw=float(np.clip(pos[0] / 10, -0.5, 0.5)))
        img = finish(img, rng, light=float(rng.uniform(0.95, 1.05)), noise=3.0)
        frames[i] = img
        path = vdir / frame_name(i + 1)
        if absent[i]:
            path.unlink(missing_ok=True)
        else:
            _write_jpg(path, img)
        if progress and (i + 1) % 100 == 0:
            progress(100)
    if progress and len(valence) % 100:
        progress(len(valence) % 100)
    return frames


def _label_text(valence: np.ndarray, arousal: np.ndarray, invalid: np.ndarray) -> str:
    rows = ["-5,-5" if bad else f"{v:.3f},{a:.3f}" for v, a, bad in zip(valence, arousal, invalid)]
    return "valence,arousal\n" + "\n".join(rows) + "\n"


def _frame_envelope(audio: np.ndarray, n_frames: int, fps: float, sr: int) -> np.ndarray:
    """Per-frame voice loudness in [0, 1] (drives mouth movement)."""
    hop = sr / fps
    env = np.array([np.abs(audio[int(i * hop):int((i + 1) * hop)]).mean() if int(i * hop) < len(audio) else 0.0
                    for i in range(n_frames)])
    return env / (env.max() + 1e-9)


def generate(out: str | os.PathLike, train_videos: int = 8, val_videos: int = 3, frames: int = 600,
             size: int = 112, seed: int = 0, progress: Callable[[int], None] | None = None,
             overwrite: bool = False) -> SynthSummary:
    """Write the set under ``out``; ``progress(n)`` is called with the number of frames rendered.

    The last video of each split (when the split has at least two) is a ``_left``/``_right`` pair.
    """
    out = claim_folder(out, "affwild2-va", overwrite)
    names: dict[str, list[str]] = {}
    n_written: dict[str, int] = {}
    n_invalid: dict[str, int] = {}
    for split_id, (split, n_videos) in enumerate((("train", train_videos), ("val", val_videos))):
        label_dir = out / VA_DIR / SPLIT_DIRS[split]
        label_dir.mkdir(parents=True, exist_ok=True)
        names[split], n_written[split], n_invalid[split] = [], 0, 0
        for k in range(n_videos):
            rng = np.random.default_rng([seed, 11, split_id, k])
            base = f"synth_va_{split}_{k:03d}"
            people = ("_left", "_right") if (k == n_videos - 1 and n_videos >= 2) else ("",)
            arousal = smooth_curve(frames, FPS, rng)        # shared by a pair: one conversation, one voice
            valences = [smooth_curve(frames, FPS, rng) for _ in people]
            # a single speaker's voice also carries a weak valence cue (pitch slope)
            audio = voice_track(valences[0] if len(people) == 1 else np.zeros(frames), arousal, FPS, SAMPLE_RATE,
                                rng.uniform(100, 220), rng)
            env = _frame_envelope(audio, frames, FPS, SAMPLE_RATE)
            shown = []
            for suffix, valence in zip(people, valences):
                absent = rng.random(frames) < 0.03
                invalid = np.zeros(frames, bool)
                if rng.random() < 0.5:                   # a stretch the annotators skipped
                    s0 = int(rng.integers(0, frames - 10))
                    invalid[s0:s0 + int(rng.integers(3, 10))] = True
                name = base + suffix
                imgs = _render_person(valence, arousal, env, size, rng, out / "cropped_aligned" / name, absent, progress)
                write_text(label_dir / f"{name}.txt", _label_text(valence, arousal, invalid))
                shown.append(imgs)
                names[split].append(name)
                n_written[split] += int((~absent).sum())
                n_invalid[split] += int(invalid.sum())
            write_video(out / "videos" / f"{base}.mp4", np.concatenate(shown, axis=2), FPS, audio=audio, sr=SAMPLE_RATE)
    return SynthSummary(names, n_written, n_invalid)
