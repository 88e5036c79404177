"""Modality dropout on raw inputs, as the RAVDESS self-attention fusion reference trains.

Each mode turns a batch of two named inputs into a larger, shuffled batch (targets repeated):

- ``softhard`` (x4): [original; (a*c, b*(1-c)) with c ~ U{0, .01, ..., .99} per sample;
  (a = 0, b); (a, b = 0)];
- ``noise`` (x3): [original; (a ~ N(0, 1), b); (a, b ~ N(0, 1))];
- ``none``: unchanged.

Written as a :class:`~edgeaffect.train.trainer.Trainer` ``batch_transform`` over input names, so
any two-input model can use it; the trainer's per-epoch generator makes it deterministic.
"""
from __future__ import annotations

from typing import Callable

import torch

MODES = ("softhard", "noise", "none")
EXPANSION = {"softhard": 4, "noise": 3, "none": 1}


def _per_sample(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return c.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def modality_dropout(mode: str, first: str = "audio", second: str = "video") -> Callable[[dict, torch.Generator], dict] | None:
    """The batch transform for ``mode`` over inputs ``first`` and ``second`` (None for ``none``)."""
    if mode not in MODES:
        raise ValueError(f"unknown modality dropout {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "none":
        return None

    def transform(batch: dict, gen: torch.Generator) -> dict:
        a, b, y = batch[first], batch[second], batch["target"]
        if mode == "softhard":
            c = torch.randint(0, 100, (a.shape[0],), generator=gen).float() / 100
            a_all = torch.cat((a, a * _per_sample(c, a), torch.zeros_like(a), a))
            b_all = torch.cat((b, b * _per_sample(1 - c, b), b, torch.zeros_like(b)))
        else:
            a_all = torch.cat((a, torch.randn(a.shape, generator=gen, dtype=a.dtype), a))
            b_all = torch.cat((b, b, torch.randn(b.shape, generator=gen, dtype=b.dtype)))
        k = EXPANSION[mode]
        order = torch.randperm(k * a.shape[0], generator=gen)
        out = dict(batch)
        out[first], out[second] = a_all[order], b_all[order]
        out["target"] = y.repeat(k, *([1] * (y.dim() - 1)))[order]
        return out

    return transform
