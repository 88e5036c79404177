"""Task "va": Aff-Wild2 valence-arousal regression per sub-clip, scored by CCC.

Loss as the reference: ``(1 - CCC(valence)) + (1 - CCC(arousal))`` with each
CCC taken over the whole flattened batch, rho = cov / (sigma_x sigma_y + 1e-8)
and unbiased standard deviations.  Metric: CCC over every scored sub-clip of the
split (``metrics.ccc``); the main value is the mean of CCC_V and CCC_A (the
reference selects checkpoints by their sum).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..spec import ModelSpec
from .metrics import ccc
from .tasks import Task, register_task
from .trainer import TrainConfig


def ccc_loss(pred, target, eps: float = 1e-8):
    """1 - CCC over all elements (torch), the reference's CCCLoss."""
    import torch

    x, y = pred.reshape(-1).float(), target.reshape(-1).float()
    vx, vy = x - x.mean(), y - y.mean()
    rho = (vx * vy).sum() / (torch.sqrt((vx ** 2).sum()) * torch.sqrt((vy ** 2).sum()) + eps)
    sx, sy = x.std(), y.std()
    return 1 - 2 * rho * sx * sy / (sx ** 2 + sy ** 2 + (x.mean() - y.mean()) ** 2)


def reference_recipe(epochs: int = 30, batch_size: int = 8, lr: float = 1e-3, device: str = "cpu",
                     seed: int = 0) -> TrainConfig:
    """Adam as the reference (lr 1e-3, decayed x0.8 every 2 epochs after epoch 5, no weight decay).

    The reference trains only the fusion with batch 64; here the backbones train
    too, with smaller batches, so gradients are clipped at 5.
    """
    milestones = tuple(range(7, max(epochs, 7), 2))
    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, weight_decay=0.0,
                       schedule="step", milestones=milestones, gamma=0.8, grad_clip=5.0, seed=seed, device=device)


class VATask(Task):
    name = "va"
    metric = "ccc"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, **kw: Any):
        from ..data.affwild2_va import AffWild2VADataset

        return AffWild2VADataset(root, split, spec.preprocessing, **kw)

    def loss(self, outputs, target):
        valence, arousal = outputs
        return ccc_loss(valence, target[..., 0]) + ccc_loss(arousal, target[..., 1])

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        target = np.asarray(target)
        cv = ccc(outputs["valence"], target[..., 0])
        ca = ccc(outputs["arousal"], target[..., 1])
        return {"ccc": (cv + ca) / 2, "ccc_valence": cv, "ccc_arousal": ca}

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        """Quadrant of the sequence's mean (valence, arousal): calibration subsets span the circumplex."""
        m = np.asarray(target).reshape(len(target), -1, 2).mean(1)
        return (m[:, 0] > 0).astype(int) * 2 + (m[:, 1] > 0).astype(int)


register_task(VATask())
