"""Dual-branch network for Emotional Reaction Intensity (ABAW5, Hume-Reaction).

The authors' code is not public (reference/models.md §1); the concrete sizes
here are **ours**, chosen to be edge-sized and ONNX-exportable while following
the published description:

- video branch: per-frame CNN (depthwise-separable, 5 stages to 1/16 of the
  face size) -> CBAM-style spatial attention -> global average pool -> 128-d;
  TCN over time (channels 128,128,128; k=3; dilation 1,2,4) -> 2-layer, 4-head
  temporal transformer -> mean over time;
- audio branch: MFCC [n_mfcc, F] -> input BatchNorm -> two stride-2 1-D convs
  (F/4 steps) -> the same TCN + transformer shape -> mean over time;
- fusion: concat(128 + 128) -> MLP 256-128-7 -> sigmoid; during training one
  whole modality embedding is zeroed with probability ``modality_dropout``
  each (never both), as the seed's README describes.

``eri_audio`` and ``eri_video`` are the unimodal stages the seed pre-trains
before fusion; their branch weights load into ``eri_dual_branch`` unchanged.

``eri_int8`` (stages ``eri_audio``, ``eri_int8_video``, ``eri_int8``) keeps that design and swaps the
frame CNN for one built for int8 conv kernels (:class:`DenseFrameEncoder`): the depthwise-separable
trunk above spends most of its time outside dense convs (a 3-channel stem, depthwise convs, the CBAM
reductions), which int8 kernels barely speed up.  The audio branch is already dense 1-D convs of 128
channels and is shared unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import EdgeAffectError
from ..labels import ERI_LABELS
from ..spec import BATCH, ModelSpec, TensorSpec
from .layers import TCN, DepthwiseSeparable, SpaceToDepth, SpatialAttention, TemporalTransformer, conv_bn_act
from .registry import register_model



def mfcc_frames(seconds: float, sample_rate: int, hop_length: int) -> int:
    """Number of MFCC frames librosa returns (center=True) for a clip of ``seconds``."""
    return 1 + int(round(seconds * sample_rate)) // hop_length


def eri_preprocessing(frames: int = 32, face_size: int = 112, sample_rate: int = 16000, n_mfcc: int = 40,
                      audio_seconds: float = 4.0) -> dict:
    return {
        "frames": frames, "face_size": face_size, "face_margin": 0.2, "color": "RGB", "scale": "1/255",
        "sample_rate": sample_rate, "n_mfcc": n_mfcc, "n_fft": int(0.025 * sample_rate),
        "hop_length": int(0.010 * sample_rate), "audio_seconds": audio_seconds,
    }


class FrameEncoder(nn.Module):
    """Per-frame CNN with spatial attention: [N, 3, S, S] -> [N, dim]."""

    def __init__(self, dim: int = 128, width: int = 24):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn_act(3, w, 3, 2),
            DepthwiseSeparable(w, 2 * w, 2),
            DepthwiseSeparable(2 * w, 2 * w, 1),
            DepthwiseSeparable(2 * w, 4 * w, 2),
            DepthwiseSeparable(4 * w, 4 * w, 1),
            DepthwiseSeparable(4 * w, 8 * w, 2),
        )
        self.attention = SpatialAttention(7)
        self.proj = nn.Linear(8 * w, dim)

    def forward(self, x):
        x = self.attention(self.features((x - 0.5) / 0.5))
        return self.proj(x.mean((2, 3)))


class SpatialGate(nn.Module):
    """Spatial attention from a 3x3 conv over all channels -> sigmoid map (CBAM's role without its
    channel mean/max reductions and 2-channel conv, which have no int8 kernel worth the name)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


class DenseFrameEncoder(nn.Module):
    """Per-frame CNN for int8 kernels: [N, 3, S, S] -> [N, dim], S a multiple of 16.

    Space-to-depth (4x4 -> 48 channels) instead of a 3-channel stem, four dense 3x3 conv+BN+ReLU at
    1/8 and 1/16 of the face (widths w, 2w, 2w, 4w: 32-128 at w=32, multiples of 16 for the int8
    SIMD blocks), then the spatial gate.  At 112 px about 1.3x the MACs of :class:`FrameEncoder`,
    all of them in dense convs.  The [0, 1] input needs no normalisation: the first BN absorbs it.
    """

    def __init__(self, dim: int = 128, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            SpaceToDepth(4),
            conv_bn_act(48, w, 3, 2),
            conv_bn_act(w, 2 * w, 3, 1),
            conv_bn_act(2 * w, 2 * w, 3, 2),
            conv_bn_act(2 * w, 4 * w, 3, 1),
        )
        self.attention = SpatialGate(4 * w)
        self.proj = nn.Linear(4 * w, dim)

    def forward(self, x):
        return self.proj(self.attention(self.features(x)).mean((2, 3)))


ENCODERS = {"depthwise": (FrameEncoder, 24), "dense": (DenseFrameEncoder, 32)}


class VideoBranch(nn.Module):
    """[B, T, 3, S, S] in [0, 1] -> [B, dim]."""

    def __init__(self, frames: int, dim: int = 128, width: int = 24, depth: int = 2, heads: int = 4,
                 encoder: str = "depthwise"):
        super().__init__()
        self.frames = frames
        self.encoder = ENCODERS[encoder][0](dim, width)
        self.tcn = TCN(dim, (dim, dim, dim))
        self.transformer = TemporalTransformer(dim, frames, depth, heads)

    def forward(self, video):
        b, t = video.shape[0], video.shape[1]
        feats = self.encoder(video.reshape(b * t, *video.shape[2:])).reshape(b, t, -1)
        feats = self.tcn(feats.transpose(1, 2)).transpose(1, 2)
        return self.transformer(feats)


class AudioBranch(nn.Module):
    """[B, n_mfcc, F] -> [B, dim]."""

    def __init__(self, n_mfcc: int, steps: int, dim: int = 128, depth: int = 2, heads: int = 4):
        super().__init__()
        self.norm = nn.BatchNorm1d(n_mfcc)
        self.stem = nn.Sequential(
            nn.Conv1d(n_mfcc, dim, 3, stride=2, padding=1), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
            nn.Conv1d(dim, dim, 3, stride=2, padding=1), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
        )
        reduced = (((steps - 1) // 2 + 1) - 1) // 2 + 1
        self.tcn = TCN(dim, (dim, dim, dim))
        self.transformer = TemporalTransformer(dim, reduced, depth, heads)

    def forward(self, audio):
        x = self.tcn(self.stem(self.norm(audio)))
        return self.transformer(x.transpose(1, 2))


class IntensityHead(nn.Module):
    def __init__(self, cin: int, hidden: int = 128, n_out: int = 7, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, n_out))

    def forward(self, x):
        return torch.sigmoid(self.net(x))


def _spec(name: str, inputs: tuple[TensorSpec, ...], pre: dict, config: dict) -> ModelSpec:
    return ModelSpec(name=name, task="eri", inputs=inputs,
                     outputs=(TensorSpec("intensities", (BATCH, len(ERI_LABELS))),),
                     labels=ERI_LABELS, activation="none", metric="pearson", preprocessing=pre, config=config)


def _inputs(pre: dict, video: bool, audio: bool) -> tuple[TensorSpec, ...]:
    out = []
    if video:
        out.append(TensorSpec("video", (BATCH, pre["frames"], 3, pre["face_size"], pre["face_size"])))
    if audio:
        steps = mfcc_frames(pre["audio_seconds"], pre["sample_rate"], pre["hop_length"])
        out.append(TensorSpec("audio", (BATCH, pre["n_mfcc"], steps)))
    return tuple(out)


class ERIModel(nn.Module):
    """Audio, video or fused ERI model; which branches exist depends on ``modalities``."""

    def __init__(self, name: str, modalities: tuple[str, ...], frames: int = 32, face_size: int = 112,
                 sample_rate: int = 16000, n_mfcc: int = 40, audio_seconds: float = 4.0, dim: int = 128,
                 width: int | None = None, modality_dropout: float = 0.2, encoder: str = "depthwise"):
        super().__init__()
        if encoder not in ENCODERS:
            raise EdgeAffectError(f"unknown ERI frame encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
        if encoder == "dense" and "video" in modalities and face_size % 16:
            raise EdgeAffectError(f"{name} needs a face size that is a multiple of 16 (space-to-depth stem and "
                                  f"two stride-2 convs), not {face_size}")
        width = width or ENCODERS[encoder][1]
        pre = eri_preprocessing(frames, face_size, sample_rate, n_mfcc, audio_seconds)
        config = dict(frames=frames, face_size=face_size, sample_rate=sample_rate, n_mfcc=n_mfcc,
                      audio_seconds=audio_seconds, dim=dim, width=width, modality_dropout=modality_dropout,
                      encoder=encoder)
        self.modalities = modalities
        self.modality_dropout = modality_dropout
        self.video = VideoBranch(frames, dim, width, encoder=encoder) if "video" in modalities else None
        steps = mfcc_frames(audio_seconds, sample_rate, pre["hop_length"])
        self.audio = AudioBranch(n_mfcc, steps, dim) if "audio" in modalities else None
        self.head = IntensityHead(dim * len(modalities))
        self.spec = _spec(name, _inputs(pre, "video" in modalities, "audio" in modalities), pre, config)

    def forward(self, *inputs):
        embs = []
        named = dict(zip(self.spec.input_names, inputs))
        if self.video is not None:
            embs.append(self.video(named["video"]))
        if self.audio is not None:
            embs.append(self.audio(named["audio"]))
        if self.training and len(embs) == 2 and self.modality_dropout > 0:
            embs = _drop_one_modality(embs, self.modality_dropout)
        return self.head(torch.cat(embs, dim=1))


def _drop_one_modality(embs: list[torch.Tensor], p: float) -> list[torch.Tensor]:
    """Per sample: zero the video embedding with prob p, else the audio one with prob p; never both."""
    b = embs[0].shape[0]
    u = torch.rand(b, device=embs[0].device)
    keep_v = (u >= p).float().unsqueeze(1)
    keep_a = ((u < p) | (u >= 2 * p)).float().unsqueeze(1)
    return [embs[0] * keep_v, embs[1] * keep_a]


@register_model(task="eri")
def eri_dual_branch(**kw) -> ERIModel:
    """ERI dual branch: face video + voice MFCC, TCN + transformer per branch, fused, 7 sigmoid intensities."""
    return ERIModel("eri_dual_branch", ("video", "audio"), **kw)


@register_model(task="eri")
def eri_video(**kw) -> ERIModel:
    """ERI video-only stage: face frames -> CNN + spatial attention -> TCN -> transformer -> 7 intensities."""
    kw.pop("modality_dropout", None)
    return ERIModel("eri_video", ("video",), modality_dropout=0.0, **kw)


@register_model(task="eri")
def eri_audio(**kw) -> ERIModel:
    """ERI audio-only stage: MFCC -> conv stem -> TCN -> transformer -> 7 intensities."""
    kw.pop("modality_dropout", None)
    return ERIModel("eri_audio", ("audio",), modality_dropout=0.0, **kw)


@register_model(task="eri")
def eri_int8(**kw) -> ERIModel:
    """ERI dual branch for int8 kernels: space-to-depth stem, dense 3x3 convs of 32-128 channels, ReLU."""
    kw.setdefault("encoder", "dense")
    return ERIModel("eri_int8", ("video", "audio"), **kw)


@register_model(task="eri")
def eri_int8_video(**kw) -> ERIModel:
    """ERI video-only stage of eri_int8: the dense int8-friendly frame CNN -> TCN -> transformer."""
    kw.pop("modality_dropout", None)
    kw.setdefault("encoder", "dense")
    return ERIModel("eri_int8_video", ("video",), modality_dropout=0.0, **kw)
