"""TSN / TSM for bodily expression recognition on EmoReact (reference/models.md §5).

Following the seed (nkegke/deep-affective-bodily-expression-recognition):

- a 2-D backbone runs on each of S frames (one per TSN segment): MobileNetV2
  ``features`` + global average pool (1280-d) or a ResNet-50 trunk (2048-d);
- ``new_fc`` = Linear(dim, 8) with no dropout (the seed's base model is an
  ``nn.Sequential``, so TSN inserts none);
- consensus = mean of the per-segment logits -> ``logits [B, 8]`` (sigmoid
  gives the label scores);
- partial BN: while training, every BatchNorm2d but the first stays in eval
  mode with frozen affine parameters (:meth:`BodyTSN.train`);
- temporal shift module (``shift=True``, 'blockres'): the first conv of every
  residual block sees 1/``shift_div`` of its channels from the next segment
  and 1/``shift_div`` from the previous one (zero-padded at the ends).  For
  ResNet-50 that is each Bottleneck's ``conv1``, as in the seed.  The seed has
  no shifted MobileNetV2 (``--shift --arch mobilenet_v2`` trains plain TSN):
  ``body_tsm_mobilenetv2`` is ours, shifting the first conv of each residual
  InvertedResidual block as TSM's own MobileNetV2 does;
- fusion (``input="fusion"``): a network on the body stream (``frames``) and
  one on the face stream (``face``); the output is the mean of the two logit
  vectors.  ``fusion_streams="shared"`` is the seed's: the *same* network runs
  on both streams (as one batch, so BatchNorm sees the same mix in training and
  evaluation).  ``"separate"`` gives each stream its own backbone and
  classifier (twice the parameters, the same FLOPs): sharing starved the body
  stream, which then read the arm and posture cues far worse than a body-only
  model (docs/body.md).  In training mode the model also returns both streams'
  logits so the task can sum BCE(body) + BCE(face) as the seed does; in eval
  mode (and in every exported graph) it returns ``logits`` only.

Inputs are RGB in [0, 1]; ImageNet normalisation happens inside the graph so
exported models take the same tensors as the PyTorch one.

Registered names: ``body_{tsn,tsm}_{mobilenetv2,resnet50}``; the input kind is
the ``input`` keyword (default ``body``), since it changes the inputs, not the weights.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from ..labels import EMOREACT_LABELS
from ..spec import BATCH, ModelSpec, TensorSpec
from .backbones import Bottleneck, MobileNetV2Features, resnet50_trunk
from .registry import register_model

INPUTS = ("face", "body", "fullbody", "fusion")
FUSION_STREAMS = ("shared", "separate")
ARCHS = {"mobilenet_v2": "mobilenetv2", "resnet50": "resnet50"}
SEED_SHIFT_ARCHS = ("resnet50",)   # the seed's TSM wraps ResNet Bottlenecks only
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def temporal_shift(x: torch.Tensor, segments: int, fold_div: int = 8, channels: int | None = None) -> torch.Tensor:
    """Shift channels along time in ``x [N*S, C, H, W]`` with slicing and concat only (ONNX-exportable).

    Channels ``[0:fold]`` take the value of segment t+1, ``[fold:2*fold]`` of
    segment t-1, the rest stay; missing neighbours are zeros.  ``fold = C // fold_div``
    (``channels`` gives C as a Python int, so tracing for ONNX sees a constant).
    """
    nt, c, h, w = x.shape
    fold = (c if channels is None else channels) // fold_div
    if fold == 0:
        return x
    x = x.reshape(-1, segments, c, h, w)
    left, right, keep = x[:, :, :fold], x[:, :, fold:2 * fold], x[:, :, 2 * fold:]
    left = torch.cat((left[:, 1:], torch.zeros_like(left[:, :1])), dim=1)
    right = torch.cat((torch.zeros_like(right[:, :1]), right[:, :-1]), dim=1)
    return torch.cat((left, right, keep), dim=2).reshape(nt, c, h, w)


class TemporalShift(nn.Module):
    """Apply :func:`temporal_shift` before ``net`` (adds no parameters).

    The shift moves channels along time, never across channels, so for channel pruning it is an
    identity: ``channel_identity`` lets the pruner bypass it while tracing (torch-pruning cannot
    follow its slices), and the channel count is read from the wrapped conv, so it follows pruning.
    """

    channel_identity = True

    def __init__(self, net: nn.Module, segments: int, fold_div: int = 8):
        super().__init__()
        self.net = net
        self.segments = segments
        self.fold_div = fold_div
        self.bypass = False

    @property
    def channels(self) -> int:
        return next(m for m in self.net.modules() if isinstance(m, nn.Conv2d)).in_channels

    def forward(self, x):
        if self.bypass:
            return self.net(x)
        return self.net(temporal_shift(x, self.segments, self.fold_div, self.channels))

    def extra_repr(self) -> str:
        return f"segments={self.segments}, fold_div={self.fold_div}"


def _shift_inverted_residual(block: nn.Module, segments: int, fold_div: int) -> nn.Module:
    block.conv[0] = TemporalShift(block.conv[0], segments, fold_div)
    return block


def build_backbone(arch: str, segments: int, shift: bool, shift_div: int, width: float = 1.0) -> nn.Module:
    """MobileNetV2 features or a ResNet-50 trunk, with the temporal shift inserted when asked.

    ``width`` scales the channels (1.0 = the published networks; smaller for
    quick experiments): MobileNetV2's width multiplier, or ResNet's base width ``64 * width``.
    """
    if arch == "mobilenet_v2":
        wrap = functools.partial(_shift_inverted_residual, segments=segments, fold_div=shift_div) if shift else None
        return MobileNetV2Features(width_mult=width, block_wrapper=wrap)
    if arch == "resnet50":
        net = resnet50_trunk(width=max(8, int(round(64 * width))))
        if shift:
            for m in net.modules():
                if isinstance(m, Bottleneck):
                    m.conv1 = TemporalShift(m.conv1, segments, shift_div)
        return net
    raise ValueError(f"unknown arch {arch!r} (expected one of {', '.join(ARCHS)})")


def body_preprocessing(input: str, segments: int, size: int, clip_seconds: float = 3.0) -> dict:
    """What the reader (and the demo) feeds: ``streams`` maps each input to the region it is cut from;
    ``clip_seconds`` is the live window the demo spreads the segments over (training spreads them over
    the whole clip, which a stream does not have)."""
    streams = {"frames": "body" if input == "fusion" else input}
    if input == "fusion":
        streams["face"] = "face"
    return {
        "input": input, "streams": streams, "segments": segments, "size": size,
        "scale_size": int(round(size * 256 / 224)), "face_margin": 0.1, "clip_seconds": clip_seconds,
        "color": "RGB", "scale": "1/255", "normalize": "imagenet (inside the model)",
        "face_box": "Haar cascade, the detection that agrees with the clip's median face, +10% each side, nearest detection reused",
        "body_box": "face-anchored: 7 face widths wide, from 1 face height above the face to the frame bottom",
        "sampling": "TSN: random frame per segment (train), segment centres (eval)",
    }


class BodyTSN(nn.Module):
    """TSN (optionally with TSM) over S segments for 8 EmoReact labels; see the module docstring."""

    def __init__(self, name: str, arch: str = "mobilenet_v2", input: str = "body", segments: int = 3,
                 size: int = 224, shift: bool = False, shift_div: int = 8, partial_bn: bool = True,
                 width: float = 1.0, fusion_streams: str = "shared"):
        super().__init__()
        if input not in INPUTS:
            raise ValueError(f"unknown input {input!r} (expected one of {', '.join(INPUTS)})")
        if fusion_streams not in FUSION_STREAMS:
            raise ValueError(f"unknown fusion_streams {fusion_streams!r} (expected one of {', '.join(FUSION_STREAMS)})")
        self.segments = segments
        self.fusion = input == "fusion"
        self.separate = self.fusion and fusion_streams == "separate"
        self.partial_bn = partial_bn
        self.base_model = build_backbone(arch, segments, shift, shift_div, width)
        self.new_fc = self._classifier(self.base_model.out_dim)
        if self.separate:                      # the face stream's own network
            self.face_base_model = build_backbone(arch, segments, shift, shift_div, width)
            self.face_fc = self._classifier(self.face_base_model.out_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if partial_bn:
            for bn in self._frozen_bns():
                bn.weight.requires_grad_(False)
                bn.bias.requires_grad_(False)
        frames = TensorSpec("frames", (BATCH, segments, 3, size, size))
        inputs = (frames, TensorSpec("face", (BATCH, segments, 3, size, size))) if self.fusion else (frames,)
        config = dict(arch=arch, input=input, segments=segments, size=size, shift=shift, shift_div=shift_div,
                      partial_bn=partial_bn, width=width)
        if self.fusion:
            config["fusion_streams"] = fusion_streams
        self.spec = ModelSpec(name=name, task="body", inputs=inputs,
                              outputs=(TensorSpec("logits", (BATCH, len(EMOREACT_LABELS))),),
                              labels=EMOREACT_LABELS, activation="sigmoid", metric="roc_auc_micro",
                              preprocessing=body_preprocessing(input, segments, size), config=config)

    @staticmethod
    def _classifier(dim: int) -> nn.Linear:
        fc = nn.Linear(dim, len(EMOREACT_LABELS))
        nn.init.normal_(fc.weight, 0, 0.001)   # TSN's init of the new classifier
        nn.init.zeros_(fc.bias)
        return fc

    def _backbones(self) -> list[nn.Module]:
        return [self.base_model] + ([self.face_base_model] if self.separate else [])

    def _frozen_bns(self) -> list[nn.BatchNorm2d]:
        return [bn for net in self._backbones()
                for bn in [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)][1:]]

    def train(self, mode: bool = True):
        """Partial BN: in training, all BatchNorm2d but the first keep their running statistics."""
        super().train(mode)
        if mode and self.partial_bn:
            for bn in self._frozen_bns():
                bn.eval()
        return self

    def stream(self, frames: torch.Tensor, face: bool = False) -> torch.Tensor:
        """[B, S, 3, H, W] in [0, 1] -> per-clip logits [B, 8] (mean over segments).

        ``face=True`` uses the face stream's own network when the streams are separate.
        """
        net, fc = (self.face_base_model, self.face_fc) if face and self.separate else (self.base_model, self.new_fc)
        b, s = frames.shape[0], frames.shape[1]
        x = frames.reshape(b * s, *frames.shape[2:])
        return fc(net((x - self.mean) / self.std)).reshape(b, s, -1).mean(1)

    def forward(self, frames, face=None):
        if not self.fusion:
            return self.stream(frames)
        if self.separate:
            body_logits, face_logits = self.stream(frames), self.stream(face, face=True)
        else:
            # One shared network: both streams go through as one batch, in training too, so a BatchNorm
            # normalises with the statistics of both streams, the mix its running statistics hold at
            # evaluation. (Separate passes normalised each stream by itself in training but by the mix in
            # evaluation; with every BN training, the fusion model scored at chance on validation.)
            both = self.stream(torch.cat((frames, face), 0))
            body_logits, face_logits = both[:frames.shape[0]], both[frames.shape[0]:]
        mean = (body_logits + face_logits) / 2
        return (mean, body_logits, face_logits) if self.training else mean


def model_name(arch: str, shift: bool) -> str:
    """Registered name for a CLI choice, e.g. ``body_tsm_mobilenetv2``.

    The input kind (face / body / fullbody / fusion) is a keyword of the model
    (``input=...``), not part of the name: it changes the inputs, not the weights.
    """
    return f"body_{'tsm' if shift else 'tsn'}_{ARCHS[arch]}"


def _register_all() -> None:
    for arch in ARCHS:
        for shift in (False, True):
            name = model_name(arch, shift)
            what = ("TSM" if shift else "TSN") + f" {arch}; input face, body, fullbody or fusion (two streams)"
            if shift and arch not in SEED_SHIFT_ARCHS:
                what += f" [ours: the seed shifts {', '.join(SEED_SHIFT_ARCHS)} only; its --shift runs plain TSN on {arch}]"

            def factory(_name=name, _shift=shift, _arch=arch, **kw):
                if kw.pop("shift", _shift) != _shift:
                    raise ValueError(f"{_name} has shift={_shift}; use {model_name(_arch, not _shift)}")
                return BodyTSN(_name, arch=_arch, shift=_shift, **kw)

            register_model(name, task="body", description=f"EmoReact bodily expression: {what}")(factory)


_register_all()
