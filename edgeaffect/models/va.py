"""Joint cross-attention audio-visual fusion for Aff-Wild2 valence-arousal (reference/models.md §4).

A sample is a sequence of ``subclips`` sub-clips; each sub-clip is ``frames``
aligned faces and the log-mel window of the audio that ends with its last frame.
Both per-sub-clip outputs (valence, arousal in [-1, 1]) are regressed jointly.

- video backbone: R(2+1)D-18 (stem, four stages of (2+1)D basic blocks, each
  3-D conv factorised into a 1x3x3 spatial and a 3x1x1 temporal conv, the
  middle width chosen so the pair has the parameters of the full 3x3x3 conv);
  at ``width=64`` it has the 31,300,125 parameters of the published network
  without its classifier.  Its last map [C, T', H', W'] is kept per position.
- audio backbone: ResNet-18 with a 1-channel stem (``backbones.resnet18_trunk``).
- fusion ``jca`` (the module the authors' training used): audio-guided attention
  over the visual positions, one dense joint co-attention layer, a BiLSTM over
  the concatenated streams with learned initial states and a residual Linear,
  two heads.  At the reference sizes it has 8,586,323 trainable parameters.
- fusion ``jca_lite`` (the paper's compact joint cross-attention formula): a
  joint representation J = [X_a; X_v] correlated with each modality
  (C = tanh(X^T W_j J^T / sqrt(d))), attention maps H = ReLU(W X^T + W_c C)
  added back to the features, ≈0.31 M parameters.

One deliberate difference from the reference: it flattens the channel-major
layer-4 map (512x1x7x7) and views it as 49 x 512, which mixes channels and
positions; we attend over the true spatial positions (same parameters).
The backbones start from random weights here (the reference freezes
pretrained ones, which we do not download), so they are trained with the fusion.

``va_jca_edge`` is ours: 48 px faces, 4-frame sub-clips (dilation 2), width-16
backbones and the compact fusion regressing from both attended streams, sized to
train on a CPU.  ``va_jca_edge_int8`` is that model laid out for int8 conv kernels:
space-to-depth stems (12 channels into the video stem, 16 into the audio one, instead of 3 and 1; same
output shapes), and (2+1)D middle widths rounded up to multiples of 16.  All four export to ONNX with the legacy (TorchScript) exporter
(``torch.onnx.export(..., dynamo=False)``), which lowers the BiLSTM with its
learned initial states to one ONNX ``LSTM`` op.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EdgeAffectError
from ..labels import VA_LABELS
from ..spec import BATCH, ModelSpec, TensorSpec
from .backbones import resnet18_trunk
from .layers import SpaceToDepth
from .registry import register_model

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def mel_frames(samples: int, hop: int) -> int:
    """Columns of a centred STFT (librosa/torchaudio ``center=True``) over ``samples`` samples."""
    return 1 + samples // hop


def va_preprocessing(subclips: int = 16, frames: int = 8, dilation: int = 4, frame_size: int = 112,
                     sample_rate: int = 44100, audio_samples: int = 45599) -> dict:
    """Everything the reader must do to feed the model (the reference's settings by default).

    ``video_fps`` is the frame rate ``window`` and ``dilation`` count in (Aff-Wild2's videos are 30 fps):
    a live source is sampled at ``video_fps / dilation`` so its sub-clips span the trained time.
    """
    return {
        "subclips": subclips, "frames": frames, "dilation": dilation, "window": frames * dilation, "video_fps": 30.0,
        "frame_size": frame_size, "color": "RGB", "scale": "1/255",
        "mean": list(KINETICS_MEAN), "std": list(KINETICS_STD),
        "sample_rate": sample_rate, "audio_samples": audio_samples, "n_fft": 1024, "win_length": 882,
        "hop_length": 441, "n_mels": 64, "mel_scale": "htk", "top_db": 80.0,
        "db_mean": -14.8, "db_std": 19.895,
    }


# ---------------------------------------------------------------- R(2+1)D-18 ---------------------
def _midplanes(cin: int, cout: int, multiple: int = 1) -> int:
    """Middle width of a (2+1)D pair: the parameters of the full 3x3x3 conv it replaces (rounded up to
    ``multiple``, the SIMD block of an int8 kernel)."""
    mid = (cin * cout * 3 * 3 * 3) // (cin * 3 * 3 + 3 * cout)
    return -(-mid // multiple) * multiple


class Conv2Plus1D(nn.Sequential):
    """1x3x3 spatial conv -> BN -> ReLU -> 3x1x1 temporal conv (stride split between the two)."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )


class Block2Plus1D(nn.Module):
    """Basic residual block of R(2+1)D (both convs share the middle width computed from the block's input)."""

    def __init__(self, cin: int, planes: int, stride: int = 1, multiple: int = 1):
        super().__init__()
        mid = _midplanes(cin, planes, multiple)
        self.conv1 = nn.Sequential(Conv2Plus1D(cin, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv3d(cin, planes, 1, stride, bias=False), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + idt)


class R2Plus1D18(nn.Module):
    """R(2+1)D-18 without pooling/classifier: [N, 3, T, H, W] -> [N, 8*width, T/8, H/16, W/16]."""

    def __init__(self, width: int = 64, in_channels: int = 3, int8_layout: bool = False):
        super().__init__()
        multiple = 16 if int8_layout else 1
        stem_mid = -(-round(45 * width / 64) // multiple) * multiple or 1  # 45 in the published stem
        # int8 layout: space-to-depth 2x2 then a 3x3 conv over 4*C channels covers the 7x7 stride-2 stem's field
        first = ([SpaceToDepth(2), nn.Conv3d(4 * in_channels, stem_mid, (1, 3, 3), 1, (0, 1, 1), bias=False)]
                 if int8_layout else [nn.Conv3d(in_channels, stem_mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)])
        self.stem = nn.Sequential(
            *first, nn.BatchNorm3d(stem_mid), nn.ReLU(inplace=True),
            nn.Conv3d(stem_mid, width, (3, 1, 1), 1, (1, 0, 0), bias=False),
            nn.BatchNorm3d(width), nn.ReLU(inplace=True),
        )
        layers, c = [], width
        for i, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(Block2Plus1D(c, planes, stride, multiple), Block2Plus1D(planes, planes, 1, multiple)))
            c = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = c
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def r2plus1d_out_shape(frames: int, size: int) -> tuple[int, int, int]:
    """(T', H', W') of the last map for ``frames`` x ``size`` x ``size`` input."""
    def conv(n, k, s, p):
        return (n + 2 * p - k) // s + 1
    t, h = frames, conv(size, 7, 2, 3)
    for _ in range(3):
        t, h = conv(t, 3, 2, 1), conv(h, 3, 2, 1)
    return t, h, h


# ---------------------------------------------------------------- fusion: jca (orig_cam) ---------
class PositionAttn(nn.Module):
    """Audio-guided visual attention over the positions of each sub-clip's feature map (audguide_att.py).

    z_p = w_h^T tanh(W_v ReLU(A_v V_p) + g_p 1), g = W_g ReLU(A_a a); alpha = softmax_p(z); out = A_f (alpha^T V).
    As in the reference, the audio projection gives one value per *position* (``g_p``, added to all
    hidden units of position p), not one per hidden unit: its output width must equal the number of
    positions.  The reference's 49 hidden units are its 49 = 7x7 positions of the layer-4 map, the same
    number by coincidence of its sizes; so ``att_dim`` here is the number of positions (49 at the reference
    sizes, fewer for small inputs), which keeps the reference's form, and its parameter count there.
    """

    def __init__(self, audio_dim: int = 512, video_dim: int = 512, dim: int = 512, att_dim: int = 49):
        super().__init__()
        self.affine_audio = nn.Linear(audio_dim, dim)
        self.affine_video = nn.Linear(video_dim, dim)
        self.affine_v = nn.Linear(dim, att_dim, bias=False)
        self.affine_g = nn.Linear(dim, att_dim, bias=False)
        self.affine_h = nn.Linear(att_dim, 1, bias=False)
        self.affine_feat = nn.Linear(video_dim, dim)

    def forward(self, video, audio):  # video [B, L, P, C], audio [B, L, Da] -> [B, L, dim]; P == att_dim
        v = F.relu(self.affine_video(video))
        a = F.relu(self.affine_audio(audio))
        z = self.affine_h(torch.tanh(self.affine_v(v) + self.affine_g(a).unsqueeze(-1))).squeeze(-1)
        alpha = torch.softmax(z, dim=-1)                       # [B, L, P]
        pooled = torch.matmul(alpha.unsqueeze(2), video).squeeze(2)  # [B, L, C]
        return self.affine_feat(pooled)


class DenseCoAttn(nn.Module):
    """Joint co-attention: both streams attend to the joint projection W_q [X_v; X_a].

    Keys are linear maps over *time* (L -> L); C = tanh(K J / sqrt(d_v + d_a)); out = ReLU(tanh(V C)).
    """

    def __init__(self, dim1: int, dim2: int, length: int, dropout: float):
        super().__init__()
        dim = dim1 + dim2
        self.dropouts = nn.ModuleList([nn.Dropout(dropout) for _ in range(2)])
        self.query_linear = nn.Linear(dim, dim)
        self.key1_linear = nn.Linear(length, length)
        self.key2_linear = nn.Linear(length, length)
        self.value1_linear = nn.Linear(dim1, dim1)
        self.value2_linear = nn.Linear(dim2, dim2)

    def _attend(self, query, key, value, dropout):
        scores = dropout(torch.tanh(torch.matmul(key, query) / math.sqrt(query.shape[-1])))
        return F.relu(torch.tanh(torch.matmul(value, scores)))

    def forward(self, x1, x2):  # [B, L, d1], [B, L, d2] -> two [B, L, d1 + d2]
        joint = self.query_linear(torch.cat([x1, x2], dim=-1))
        k1 = self.key1_linear(x1.transpose(1, 2))
        k2 = self.key2_linear(x2.transpose(1, 2))
        return (self._attend(joint, k1, self.value1_linear(x1), self.dropouts[0]),
                self._attend(joint, k2, self.value2_linear(x2), self.dropouts[1]))


class DCNLayer(nn.Module):
    """One co-attention sub-layer with residual projections back to each stream's width."""

    def __init__(self, dim1: int, dim2: int, length: int, dropout: float = 0.6):
        super().__init__()
        self.dense_coattn = DenseCoAttn(dim1, dim2, length, dropout)
        self.linears = nn.ModuleList([
            nn.Sequential(nn.Linear(dim1 + dim2, dim1), nn.ReLU(inplace=True), nn.Dropout(dropout)),
            nn.Sequential(nn.Linear(dim1 + dim2, dim2), nn.ReLU(inplace=True), nn.Dropout(dropout)),
        ])

    def forward(self, x1, x2):
        w1, w2 = self.dense_coattn(x1, x2)
        return x1 + self.linears[0](w1), x2 + self.linears[1](w2)


class ResidualBiLSTM(nn.Module):
    """BiLSTM with learned initial states; Linear over [input; lstm out]; L2-normalised output."""

    def __init__(self, in_dim: int, dim: int, num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.num_layers, self.rnn_dim = num_layers, dim // 2
        self.rnn = nn.LSTM(in_dim, self.rnn_dim, num_layers=num_layers, dropout=dropout,
                           bidirectional=True, batch_first=True)
        self.init_hidden = nn.Parameter(nn.init.xavier_uniform_(torch.empty(2 * 2 * num_layers, self.rnn_dim)))
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim + in_dim, dim)

    def forward(self, x):  # [B, L, in_dim] -> [B, L, dim]
        n = 2 * self.num_layers
        b = x.shape[0]
        h0 = self.init_hidden[:n].unsqueeze(1).expand(n, b, self.rnn_dim).contiguous()
        c0 = self.init_hidden[n:].unsqueeze(1).expand(n, b, self.rnn_dim).contiguous()
        out, _ = self.rnn(x, (h0, c0))
        out = self.linear(self.dropout(torch.cat([x, out], dim=-1)))
        return F.normalize(out, dim=-1)


def regressor(cin: int, hidden: int = 128, dropout: float = 0.6, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(cin, hidden)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(hidden, 1))


class JCAFusion(nn.Module):
    """The fusion module of the authors' training (orig_cam): attention, co-attention, BiLSTM, two heads."""

    def __init__(self, video_dim: int = 512, audio_dim: int = 512, length: int = 16, dim: int = 512,
                 att_dim: int = 49, dropout: float = 0.6):
        super().__init__()
        self.video_attn = PositionAttn(audio_dim, video_dim, dim, att_dim)
        self.coattn = DCNLayer(dim, audio_dim, length, dropout)
        self.joint = ResidualBiLSTM(dim + audio_dim, dim, 2, 0.0)
        self.vregressor = regressor(dim, 128, dropout)
        self.aregressor = regressor(dim, 128, dropout)
        xavier_init(self)

    def forward(self, video, audio):  # video [B, L, P, C], audio [B, L, Da]
        b, length, p, c = video.shape
        video = F.normalize(video.reshape(b, length, p * c), dim=-1).reshape(b, length, p, c)
        audio = F.normalize(audio, dim=-1)
        v = self.video_attn(video, audio)
        v, a = self.coattn(v, audio)
        x = self.joint(torch.cat([v, a], dim=-1))
        return self.vregressor(x).squeeze(-1), self.aregressor(x).squeeze(-1)


# ---------------------------------------------------------------- fusion: jca_lite (paper formula) -
class LiteJCAFusion(nn.Module):
    """The compact joint cross-attention formula, batched (reference cam.py computes it per sample).

    ``head_input="cam"`` regresses from [pooled visual; attended visual] as cam.py does
    (314,626 parameters at the reference sizes); ``"paper"`` from [attended audio; attended visual].
    """

    def __init__(self, video_dim: int = 512, audio_dim: int = 512, length: int = 16, enc_dim: int = 128,
                 k: int = 32, head_input: str = "cam", dropout: float = 0.6):
        super().__init__()
        if head_input not in ("cam", "paper"):
            raise ValueError(f"head_input must be 'cam' or 'paper', not {head_input!r}")
        self.head_input = head_input
        d = 2 * enc_dim
        self.encoder1 = nn.Linear(audio_dim, enc_dim)
        self.encoder2 = nn.Linear(video_dim, enc_dim)
        self.affine_a = nn.Linear(length, length, bias=False)
        self.affine_v = nn.Linear(length, length, bias=False)
        self.W_a = nn.Linear(length, k, bias=False)
        self.W_v = nn.Linear(length, k, bias=False)
        self.W_ca = nn.Linear(d, k, bias=False)
        self.W_cv = nn.Linear(d, k, bias=False)
        self.W_ha = nn.Linear(k, length, bias=False)
        self.W_hv = nn.Linear(k, length, bias=False)
        head_in = video_dim + enc_dim if head_input == "cam" else 2 * enc_dim
        self.vregressor = regressor(head_in, 128, dropout, act=False)
        self.aregressor = regressor(head_in, 128, dropout, act=False)

    @staticmethod
    def _attend(x, joint_t, affine, w_x, w_c, w_h):
        """x [B, L, e], joint_t [B, 2e, L] -> x + W_h ReLU(W_x x^T + W_c tanh(x^T (W_j J^T)^T / sqrt(2e)))."""
        corr = torch.matmul(x.transpose(1, 2), affine(joint_t).transpose(1, 2))  # [B, e, 2e]
        c = torch.tanh(corr / math.sqrt(joint_t.shape[1]))
        h = F.relu(w_c(c) + w_x(x.transpose(1, 2)))                               # [B, e, k]
        return w_h(h).transpose(1, 2) + x

    def forward(self, video, audio):  # video [B, L, P, C] (pooled here), audio [B, L, Da]
        video = video.mean(2)
        a = self.encoder1(audio)
        v = self.encoder2(video)
        joint_t = torch.cat([a, v], dim=-1).transpose(1, 2)
        att_v = self._attend(v, joint_t, self.affine_v, self.W_v, self.W_cv, self.W_hv)
        if self.head_input == "cam":
            feats = torch.cat([video, att_v], dim=-1)
        else:
            att_a = self._attend(a, joint_t, self.affine_a, self.W_a, self.W_ca, self.W_ha)
            feats = torch.cat([att_a, att_v], dim=-1)
        return self.vregressor(feats).squeeze(-1), self.aregressor(feats).squeeze(-1)


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights, zero biases for every Linear/Conv (the reference's init_weights)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- full model ---------------------
class VAModel(nn.Module):
    """Video [B, L, 3, F, S, S] + audio [B, L, 1, M, T] -> valence [B, L], arousal [B, L]."""

    def __init__(self, name: str = "va_jca", fusion: str = "jca", subclips: int = 16, frames: int = 8,
                 dilation: int = 4, frame_size: int = 112, width: int = 64, audio_width: int | None = None,
                 fusion_dim: int = 512, head_input: str = "cam", dropout: float = 0.6, int8_layout: bool = False):
        super().__init__()
        if fusion not in ("jca", "jca_lite"):
            raise ValueError(f"fusion must be 'jca' or 'jca_lite', not {fusion!r}")
        audio_width = audio_width or width
        pre = va_preprocessing(subclips, frames, dilation, frame_size)
        if int8_layout and frame_size % 2:
            raise EdgeAffectError(f"{name} needs an even frame size (space-to-depth stem), not {frame_size}")
        self.video_net = R2Plus1D18(width, int8_layout=int8_layout)
        self.audio_net = resnet18_trunk(in_channels=1, width=audio_width)
        if int8_layout:
            _space_to_depth_stem(self.audio_net, pre)
        vdim, adim = self.video_net.out_channels, self.audio_net.out_dim
        t, h, w = r2plus1d_out_shape(frames, frame_size)
        self.positions = t * h * w
        if fusion == "jca":
            self.fusion = JCAFusion(vdim, adim, subclips, fusion_dim, att_dim=self.positions, dropout=dropout)
        else:
            self.fusion = LiteJCAFusion(vdim, adim, subclips, head_input=head_input, dropout=dropout)
        steps = mel_frames(pre["audio_samples"], pre["hop_length"])
        config = dict(fusion=fusion, subclips=subclips, frames=frames, dilation=dilation, frame_size=frame_size,
                      width=width, audio_width=audio_width, fusion_dim=fusion_dim, head_input=head_input,
                      dropout=dropout, int8_layout=int8_layout)
        self.spec = ModelSpec(
            name=name, task="va",
            inputs=(TensorSpec("video", (BATCH, subclips, 3, frames, frame_size, frame_size)),
                    TensorSpec("audio", (BATCH, subclips, 1, pre["n_mels"], steps))),
            outputs=(TensorSpec("valence", (BATCH, subclips)), TensorSpec("arousal", (BATCH, subclips))),
            labels=VA_LABELS, activation="none", metric="ccc", preprocessing=pre, config=config)

    def unprunable_layers(self) -> list[nn.Module]:
        """Layers whose output width structured pruning must keep (``edgeaffect export --prune``).

        The fusion's attention multiplies features across sub-clips and positions, which torch-pruning
        reads as channel couplings that do not exist: the fusion keeps its widths, and so do the two
        backbones' outputs that feed it (their last conv; the residual stage it closes keeps its width).
        The backbones' inner widths are pruned.
        """
        keep = [m for m in self.fusion.modules() if isinstance(m, nn.Linear)]
        for net in (self.video_net, self.audio_net):
            keep.append([m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))][-1])
        return keep

    def forward(self, video, audio):
        b, length = video.shape[0], video.shape[1]
        v = self.video_net(video.reshape(b * length, *video.shape[2:]))        # [BL, C, T', H', W']
        v = v.flatten(2).transpose(1, 2).reshape(b, length, -1, v.shape[1])    # [B, L, P, C]
        a = self.audio_net(audio.reshape(b * length, *audio.shape[2:])).reshape(b, length, -1)
        return self.fusion(v, a)


def _space_to_depth_stem(trunk: nn.Module, pre: dict) -> None:
    """Swap a ResNet trunk's 1-channel 7x7 stride-2 conv + max-pool for space-to-depth 4x4 + a 3x3 conv
    over 16 channels: the same 1/4 map, from a conv an int8 kernel fills."""
    steps = mel_frames(pre["audio_samples"], pre["hop_length"])
    if pre["n_mels"] % 4 or steps % 4:
        raise EdgeAffectError(f"the int8 audio stem needs mel bins and frames divisible by 4, not "
                              f"{pre['n_mels']}x{steps}")
    width = trunk.conv1.out_channels
    trunk.conv1 = nn.Sequential(SpaceToDepth(4), nn.Conv2d(16 * trunk.conv1.in_channels, width, 3, 1, 1, bias=False))
    trunk.maxpool = nn.Identity()
    nn.init.kaiming_normal_(trunk.conv1[1].weight, mode="fan_out", nonlinearity="relu")


@register_model(task="va")
def va_jca(**kw) -> VAModel:
    """Aff-Wild2 VA, reference sizes: R(2+1)D-18 + ResNet-18 audio, joint co-attention + BiLSTM fusion."""
    kw.setdefault("fusion", "jca")
    return VAModel("va_jca", **kw)


@register_model(task="va")
def va_jca_lite(**kw) -> VAModel:
    """Aff-Wild2 VA, reference backbones with the paper's compact joint cross-attention (0.31 M fusion)."""
    kw.setdefault("fusion", "jca_lite")
    return VAModel("va_jca_lite", **kw)


EDGE_DEFAULTS = dict(subclips=16, frames=4, dilation=2, frame_size=48, width=16, fusion="jca_lite",
                     head_input="paper")


@register_model(task="va")
def va_jca_edge(**kw) -> VAModel:
    """Aff-Wild2 VA for CPUs/edge: 48 px, 4-frame sub-clips, width-16 backbones, compact JCA fusion."""
    return VAModel("va_jca_edge", **{**EDGE_DEFAULTS, **kw})


@register_model(task="va")
def va_jca_edge_int8(**kw) -> VAModel:
    """va_jca_edge laid out for int8 kernels: space-to-depth stems, (2+1)D widths in multiples of 16."""
    return VAModel("va_jca_edge_int8", **{**EDGE_DEFAULTS, "int8_layout": True, **kw})
