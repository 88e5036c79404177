"""Self-attention audio-visual fusion for RAVDESS (ICPR 2022; reference/models.md §2).

Architecture as in the authors' code, re-written here:

- visual: EfficientFace (ShuffleNetV2 stages [4, 8, 4], widths 29-116-232-464-1024,
  a Modulator on stage 2 plus a LocalFeatureExtractor on the stage-1 map), global
  average pool per frame, then two 1-D temporal stages (1024->64->64, 64->128->128);
- audio: AudioCNNPool over MFCC [B, 10, 156] ('valid' 1-D convs + max-pool(2, 1));
- fusion after stage 1 (``ia`` attention-weight gating, ``it`` transformer blocks with
  a residual) or after stage 2 (``lt``), then Linear(256, 8) on the time-pooled
  [audio, video] features.

Module attribute names follow the reference, so an EfficientFace checkpoint (keys
``module.conv1.0.weight`` ...) loads into ``visual_model`` unchanged.  The unimodal
classifiers are kept (unused in the fused forward) so parameter counts match.

Deviations for edge use, with identical maths: 1-D ``'same'`` padding is written as
explicit ``padding=1``; attention uses plain matmul + softmax; the local feature
extractor splits the stage-1 map at its half size instead of the constants 28/56, so
smaller faces (multiples of 16 px) work for quick experiments.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import EdgeAffectError
from ..labels import RAVDESS_LABELS
from ..spec import BATCH, ModelSpec, TensorSpec
from .registry import register_model
from ..fileio import load_checkpoint

FUSIONS = ("ia", "it", "lt")


def ravdess_preprocessing(frames: int = 15, face_size: int = 224, seconds: float = 3.6,
                          sample_rate: int = 22050, n_mfcc: int = 10) -> dict:
    """Preprocessing of the reference: face crops BGR /255; audio as ``librosa.load(sr=...)`` (its resampler,
    ``resample``), librosa MFCC with its defaults."""
    return {
        "frames": frames, "face_size": face_size, "face_margin": 0.0, "color": "BGR", "scale": "1/255",
        "clip_seconds": seconds, "sample_rate": sample_rate, "resample": "librosa", "n_mfcc": n_mfcc,
        "n_fft": 2048, "hop_length": 512, "audio_seconds": seconds,
    }


def mfcc_steps(seconds: float, sample_rate: int, hop_length: int = 512) -> int:
    """MFCC frames librosa gives (center=True) for ``seconds`` of audio: 156 for 3.6 s at 22.05 kHz."""
    return 1 + int(round(seconds * sample_rate)) // hop_length


# --------------------------------------------------------------------------------------------------
# EfficientFace
# --------------------------------------------------------------------------------------------------
def _dw(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """Depthwise(-multiplier) 3x3 conv without bias, grouped by the input channels."""
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False, groups=cin)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits channels and transforms one half; stride 2 transforms both."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride == 1 and cin != 2 * half:
            raise ValueError(f"stride-1 unit needs cin == cout, got {cin}->{cout}")
        if stride > 1:
            self.branch1 = nn.Sequential(
                _dw(cin, cin, stride), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            _dw(half, half, stride), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class LocalFeatureExtractor(nn.Module):
    """Four quadrant patches, each through dw 3x3 s2 (cin->cout) + dw 3x3, re-tiled to one map."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.relu = nn.ReLU()
        for i in range(1, 5):
            setattr(self, f"conv{i}_1", _dw(cin, cout, 2))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(cout))
            setattr(self, f"conv{i}_2", _dw(cout, cout, 1))
            setattr(self, f"bn{i}_2", nn.BatchNorm2d(cout))

    def _patch(self, i: int, x):
        x = self.relu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(x)))
        return self.relu(getattr(self, f"bn{i}_2")(getattr(self, f"conv{i}_2")(x)))

    def forward(self, x):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        # order as the reference: 1 top-left, 2 bottom-left, 3 top-right, 4 bottom-right
        p1 = self._patch(1, x[:, :, :h, :w])
        p2 = self._patch(2, x[:, :, h:2 * h, :w])
        p3 = self._patch(3, x[:, :, :h, w:2 * w])
        p4 = self._patch(4, x[:, :, h:2 * h, w:2 * w])
        return torch.cat([torch.cat([p1, p2], dim=2), torch.cat([p3, p4], dim=2)], dim=3)


class _ChannelGate(nn.Module):
    """GAP -> FC c->c/16 -> BN -> ReLU -> FC c/16->c (names as the reference's ``gate_c``)."""

    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        r = c // reduction
        self.gate_c = nn.Sequential()
        self.gate_c.add_module("flatten", nn.Flatten())
        self.gate_c.add_module("gate_c_fc_0", nn.Linear(c, r))
        self.gate_c.add_module("gate_c_bn_1", nn.BatchNorm1d(r))
        self.gate_c.add_module("gate_c_relu_1", nn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", nn.Linear(r, c))

    def forward(self, x):
        return self.gate_c(x.mean((2, 3))).unsqueeze(2).unsqueeze(3)


class _SpatialGate(nn.Module):
    """1x1 reduce -> 2 x dilated (4) 3x3 -> 1x1 to one map (names as the reference's ``gate_s``)."""

    def __init__(self, c: int, reduction: int = 16, n_dilated: int = 2, dilation: int = 4):
        super().__init__()
        r = c // reduction
        self.gate_s = nn.Sequential()
        self.gate_s.add_module("gate_s_conv_reduce0", nn.Conv2d(c, r, 1))
        self.gate_s.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(r))
        self.gate_s.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(n_dilated):
            self.gate_s.add_module(f"gate_s_conv_di_{i}", nn.Conv2d(r, r, 3, padding=dilation, dilation=dilation))
            self.gate_s.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(r))
            self.gate_s.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        self.gate_s.add_module("gate_s_conv_final", nn.Conv2d(r, 1, 1))

    def forward(self, x):
        return self.gate_s(x)


class Modulator(nn.Module):
    """EfficientFace's channel x spatial attention: ``x * sigmoid(channel(x) * spatial(x))``."""

    def __init__(self, c: int):
        super().__init__()
        self.channel_att = _ChannelGate(c)
        self.spatial_att = _SpatialGate(c)

    def forward(self, x):
        return x * torch.sigmoid(self.channel_att(x) * self.spatial_att(x))


def conv1d_block(cin: int, cout: int) -> nn.Sequential:
    """Conv1d k3 'same' + BN + ReLU (temporal stages of the visual branch)."""
    return nn.Sequential(nn.Conv1d(cin, cout, 3, 1, 1), nn.BatchNorm1d(cout), nn.ReLU(inplace=True))


def conv1d_block_audio(cin: int, cout: int) -> nn.Sequential:
    """Conv1d k3 'valid' + BN + ReLU + MaxPool1d(2, stride 1): each block shortens time by 3."""
    return nn.Sequential(nn.Conv1d(cin, cout, 3, 1, 0), nn.BatchNorm1d(cout), nn.ReLU(inplace=True), nn.MaxPool1d(2, 1))


class EfficientFaceTemporal(nn.Module):
    """EfficientFace per frame + 1-D temporal stages: [B*T, 3, S, S] -> features [B, 128, T]."""

    def __init__(self, repeats=(4, 8, 4), widths=(29, 116, 232, 464, 1024), n_classes: int = 8, frames: int = 15):
        super().__init__()
        self.frames = frames
        self.conv1 = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for name, n, cout in zip(("stage2", "stage3", "stage4"), repeats, widths[1:4]):
            setattr(self, name, nn.Sequential(InvertedResidual(cin, cout, 2),
                                              *[InvertedResidual(cout, cout, 1) for _ in range(n - 1)]))
            cin = cout
        self.local = LocalFeatureExtractor(widths[0], widths[1])
        self.modulator = Modulator(widths[1])
        self.conv5 = nn.Sequential(nn.Conv2d(cin, widths[4], 1, bias=False), nn.BatchNorm2d(widths[4]),
                                   nn.ReLU(inplace=True))
        self.conv1d_0 = conv1d_block(widths[4], 64)
        self.conv1d_1 = conv1d_block(64, 64)
        self.conv1d_2 = conv1d_block(64, 128)
        self.conv1d_3 = conv1d_block(128, 128)
        self.classifier_1 = nn.Sequential(nn.Linear(128, n_classes))

    def forward_features(self, x):  # [N, 3, S, S] -> [N, 1024]
        x = self.maxpool(self.conv1(x))
        x = self.modulator(self.stage2(x)) + self.local(x)
        x = self.conv5(self.stage4(self.stage3(x)))
        return x.mean((2, 3))

    def forward_stage1(self, x):  # [B*T, 1024] -> [B, 64, T]
        x = x.reshape(-1, self.frames, x.shape[1]).transpose(1, 2)
        return self.conv1d_1(self.conv1d_0(x))

    def forward_stage2(self, x):
        return self.conv1d_3(self.conv1d_2(x))

    def forward_classifier(self, x):
        return self.classifier_1(x.mean(-1))


class AudioCNNPool(nn.Module):
    """MFCC [B, n_mfcc, F] -> stage1 [B, 128, F-6] -> stage2 [B, 128, F-12]."""

    def __init__(self, n_mfcc: int = 10, n_classes: int = 8):
        super().__init__()
        self.conv1d_0 = conv1d_block_audio(n_mfcc, 64)
        self.conv1d_1 = conv1d_block_audio(64, 128)
        self.conv1d_2 = conv1d_block_audio(128, 256)
        self.conv1d_3 = conv1d_block_audio(256, 128)
        self.classifier_1 = nn.Sequential(nn.Linear(128, n_classes))

    def forward_stage1(self, x):
        return self.conv1d_1(self.conv1d_0(x))

    def forward_stage2(self, x):
        return self.conv1d_3(self.conv1d_2(x))

    def forward_classifier(self, x):
        return self.classifier_1(x.mean(-1))


# --------------------------------------------------------------------------------------------------
# Attention (timm style, cross-modal: keys/values from one modality, queries from the other)
# --------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """q = W_q x_q, [k, v] = W_kv x_k (no biases), softmax(q k^T / sqrt(d_head)) v, output projection.

    Returns ``(output [B, Nq, out_dim], weights [B, heads, Nq, Nk])``.  Plain matmul + softmax.
    """

    def __init__(self, in_dim_k: int, in_dim_q: int, out_dim: int, num_heads: int = 1):
        super().__init__()
        if out_dim % num_heads:
            raise EdgeAffectError(f"attention width {out_dim} is not divisible by --heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = out_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(in_dim_q, out_dim, bias=False)
        self.kv = nn.Linear(in_dim_k, out_dim * 2, bias=False)
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, x_k, x_q):
        b, nk, _ = x_k.shape
        nq = x_q.shape[1]
        q = self.q(x_q).reshape(b, nq, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(x_k).reshape(b, nk, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, nq, self.num_heads * self.head_dim)
        return self.proj(out), attn


class AttentionBlock(nn.Module):
    """x = Attn(LN_k(x_k), LN_q(x_q)); x = x + MLP(LN(x)).  No residual from the query (as the reference)."""

    def __init__(self, in_dim_k: int, in_dim_q: int, out_dim: int, num_heads: int = 1, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1_q = nn.LayerNorm(in_dim_q)
        self.norm1_k = nn.LayerNorm(in_dim_k)
        self.attn = Attention(in_dim_k, in_dim_q, out_dim, num_heads)
        self.norm2 = nn.LayerNorm(out_dim)
        hidden = int(out_dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(out_dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, out_dim))

    def forward(self, x_k, x_q):
        x, _ = self.attn(self.norm1_k(x_k), self.norm1_q(x_q))
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------------------------------
# The fused model
# --------------------------------------------------------------------------------------------------
class MultiModalCNN(nn.Module):
    """Audio-visual emotion classifier; inputs ``video [B, T, 3, S, S]`` in [0, 1] (BGR), ``audio [B, n_mfcc, F]``."""

    def __init__(self, name: str, fusion: str = "ia", heads: int = 1, frames: int = 15, face_size: int = 224,
                 n_classes: int = 8, n_mfcc: int = 10, seconds: float = 3.6, sample_rate: int = 22050):
        super().__init__()
        if fusion not in FUSIONS:
            raise EdgeAffectError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        if face_size % 16 or face_size < 32:
            raise EdgeAffectError(f"face size must be a multiple of 16 (>= 32), got {face_size}")
        if frames < 1:
            raise EdgeAffectError(f"frames must be >= 1, got {frames}")
        self.fusion = fusion
        self.audio_model = AudioCNNPool(n_mfcc, n_classes)
        self.visual_model = EfficientFaceTemporal(n_classes=n_classes, frames=frames)
        if fusion == "lt":
            self.av = AttentionBlock(128, 128, 128, heads)
            self.va = AttentionBlock(128, 128, 128, heads)
        elif fusion == "it":
            self.av1 = AttentionBlock(64, 128, 128, heads)
            self.va1 = AttentionBlock(128, 64, 64, heads)
        else:
            self.av1 = Attention(64, 128, 128, heads)
            self.va1 = Attention(128, 64, 64, heads)
        self.classifier_1 = nn.Sequential(nn.Linear(256, n_classes))
        pre = ravdess_preprocessing(frames, face_size, seconds, sample_rate, n_mfcc)
        steps = mfcc_steps(seconds, sample_rate, pre["hop_length"])
        if steps < 16:
            raise EdgeAffectError(f"{seconds} s of audio gives {steps} MFCC frames; the audio network needs >= 16")
        config = dict(fusion=fusion, heads=heads, frames=frames, face_size=face_size, n_classes=n_classes,
                      n_mfcc=n_mfcc, seconds=seconds, sample_rate=sample_rate)
        self.spec = ModelSpec(
            name=name, task="ravdess",
            inputs=(TensorSpec("video", (BATCH, frames, 3, face_size, face_size)),
                    TensorSpec("audio", (BATCH, n_mfcc, steps))),
            outputs=(TensorSpec("logits", (BATCH, n_classes)),),
            labels=RAVDESS_LABELS[:n_classes] if n_classes <= len(RAVDESS_LABELS) else tuple(map(str, range(n_classes))),
            activation="softmax", metric="accuracy", preprocessing=pre, config=config)

    def unprunable_layers(self) -> list[nn.Module]:
        """Layers whose output width structured pruning must keep (``edgeaffect export --prune``).

        EfficientFace's ShuffleNet units split their input in two halves, concatenate and shuffle: every
        width that crosses a split or shuffle stays, so only each unit's inner width (the output of
        ``branch2``'s first 1x1 conv, shared by its depthwise conv) is pruned. The stem, the local
        extractor and the modulator feed the same coupled maps. The stage-1 and stage-2 outputs of both
        branches are the cross-modal interface: the attention weights multiply them over time steps,
        which torch-pruning would wrongly read as a channel coupling, and the attention layers are
        head-shaped.
        """
        vm, am = self.visual_model, self.audio_model
        keep = [m for sub in (vm.conv1, vm.local, vm.modulator) for m in sub.modules()
                if isinstance(m, (nn.Conv2d, nn.Linear))]
        for unit in vm.modules():
            if isinstance(unit, InvertedResidual):
                if unit.stride > 1:
                    keep += [m for m in unit.branch1.modules() if isinstance(m, nn.Conv2d)]
                keep.append(unit.branch2[5])
        keep += [vm.conv1d_1[0], vm.conv1d_3[0], am.conv1d_1[0], am.conv1d_3[0]]
        # q / kv / proj are head-shaped (kv packs keys and values): only the MLPs' hidden width is pruned
        keep += [m for att in self.modules() if isinstance(att, Attention) for m in (att.q, att.kv, att.proj)]
        return keep

    def forward(self, video, audio):
        v = self.visual_model.forward_features(video.reshape(-1, *video.shape[2:]))
        v = self.visual_model.forward_stage1(v)          # [B, 64, T]
        a = self.audio_model.forward_stage1(audio)      # [B, 128, F-6]
        if self.fusion == "lt":
            a = self.audio_model.forward_stage2(a).transpose(1, 2)   # [B, F-12, 128]
            v = self.visual_model.forward_stage2(v).transpose(1, 2)  # [B, T, 128]
            pooled = torch.cat((self.av(v, a).mean(1), self.va(a, v).mean(1)), dim=-1)
            return self.classifier_1(pooled)
        a_t, v_t = a.transpose(1, 2), v.transpose(1, 2)
        if self.fusion == "it":
            a = a + self.av1(v_t, a_t).transpose(1, 2)
            v = v + self.va1(a_t, v_t).transpose(1, 2)
        else:
            _, w_av = self.av1(v_t, a_t)     # [B, h, F', T]: audio queries over video frames
            _, w_va = self.va1(a_t, v_t)     # [B, h, T, F']
            # average over heads, sum over queries: one weight per key step, used to gate that modality
            a = w_va.mean(1).sum(-2).unsqueeze(1) * a
            v = w_av.mean(1).sum(-2).unsqueeze(1) * v
        a = self.audio_model.forward_stage2(a).mean(-1)
        v = self.visual_model.forward_stage2(v).mean(-1)
        return self.classifier_1(torch.cat((a, v), dim=-1))


def load_efficientface(visual: nn.Module, path: str | Path) -> dict:
    """Load an EfficientFace checkpoint into the visual branch (``module.`` stripped, strict=False).

    Accepts ``{"state_dict": ...}`` (the authors' ``.pth.tar``) or a bare state dict.  Tensors whose
    shape differs (e.g. the AffectNet 7-class ``fc``) are skipped.  Returns counts of what loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeAffectError(f"pretrained checkpoint {path} does not exist")
    try:
        payload = load_checkpoint(path, map_location="cpu")
    except Exception as exc:
        raise EdgeAffectError(f"cannot read pretrained checkpoint {path}: {exc}") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise EdgeAffectError(f"{path} holds no state dict")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = visual.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise EdgeAffectError(f"{path}: no tensor matches the EfficientFace backbone (is it an EfficientFace checkpoint?)")
    visual.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "skipped": len(state) - len(usable), "missing": len(own) - len(usable)}


def _factory(fusion: str):
    def make(**kw) -> MultiModalCNN:
        kw.pop("fusion", None)
        return MultiModalCNN(f"ravdess_{fusion}", fusion=fusion, **kw)
    return make


_DESCRIPTIONS = {
    "ia": "RAVDESS audio-visual, intermediate attention: cross-modal attention weights gate the other modality.",
    "it": "RAVDESS audio-visual, intermediate transformer: cross-modal attention blocks added after stage 1.",
    "lt": "RAVDESS audio-visual, late transformer: cross-modal attention blocks after stage 2.",
}
for _f in FUSIONS:
    register_model(f"ravdess_{_f}", task="ravdess", description=_DESCRIPTIONS[_f])(_factory(_f))
