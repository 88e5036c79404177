"""Building blocks shared by the model families, written to export cleanly to ONNX.

Attention is written with matmul + softmax (no fused kernels, no fast paths),
so the dynamo and legacy exporters, ONNX Runtime/OpenVINO quantizers and
TensorRT all see plain ops.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 (MobileNet v1 block)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw = conv_bn_act(cin, cin, 3, stride, groups=cin)
        self.pw = conv_bn_act(cin, cout, 1)

    def forward(self, x):
        return self.pw(self.dw(x))


class SpaceToDepth(nn.Module):
    """[N, C, (T,) H, W] -> [N, C*b*b, (T,) H/b, W/b]: a stem whose first conv reduces over C*b*b channels
    instead of an RGB stem's 3, which int8 conv kernels pad to a full SIMD block."""

    def __init__(self, block: int = 4):
        super().__init__()
        self.block = block

    def forward(self, x):
        b = self.block
        if x.dim() == 4:
            return torch.nn.functional.pixel_unshuffle(x, b)
        c, t, h, w = x.shape[1:]
        x = x.reshape(-1, c, t, h // b, b, w // b, b).permute(0, 1, 4, 6, 2, 3, 5)
        return x.reshape(-1, c * b * b, t, h // b, w // b)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a conv over [channel-mean, channel-max] gives a sigmoid map."""

    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x):
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class TemporalBlock(nn.Module):
    """Residual dilated 1-D conv block of a temporal convolutional network (non-causal, 'same' length)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dilation: int = 1, dropout: float = 0.1):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.net = nn.Sequential(
            nn.Conv1d(cin, cout, kernel, padding=pad, dilation=dilation), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv1d(cout, cout, kernel, padding=pad, dilation=dilation), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):  # x: [B, C, T]
        return self.act(self.net(x) + self.skip(x))


class TCN(nn.Module):
    """Stack of temporal blocks with growing dilation: [B, C_in, T] -> [B, C_last, T]."""

    def __init__(self, cin: int, channels: tuple[int, ...], kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        blocks, c = [], cin
        for i, cout in enumerate(channels):
            blocks.append(TemporalBlock(c, cout, kernel, dilation=2 ** i, dropout=dropout))
            c = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c

    def forward(self, x):
        return self.blocks(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with explicit matmuls (exportable; no fused SDPA)."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def forward(self, x):  # [B, T, D]
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(self.drop(att), v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder layer."""

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: float = 2.0, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class TemporalTransformer(nn.Module):
    """Learned positions + N transformer blocks over a fixed-length sequence; returns the mean over time."""

    def __init__(self, dim: int, length: int, depth: int = 2, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, dropout=dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):  # [B, T, D] -> [B, D]
        x = self.blocks(x + self.pos)
        return self.norm(x).mean(1)
