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

from ..data.affwild2_va import AffWild2VADataset
from ..labels import VA_LABELS
from ..lazy import lazy_import
from ..spec import ModelSpec
from . import Task, register_task
from .metrics import ccc, regression_report

torch = lazy_import("torch", "train")


def ccc_loss(pred, target, eps: float = 1e-8):
    """1 - CCC over all elements (torch), the reference's CCCLoss."""
    x, y = pred.reshape(-1).float(), target.reshape(-1).float()
    vx, vy = x - x.mean(), y - y.mean()
    rho = (vx * vy).sum() / (torch.sqrt((vx ** 2).sum()) * torch.sqrt((vy ** 2).sum()) + eps)
    sx, sy = x.std(), y.std()
    return 1 - 2 * rho * sx * sy / (sx ** 2 + sy ** 2 + (x.mean() - y.mean()) ** 2)


class VATask(Task):
    name = "va"
    metric = "ccc"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, **kw: Any):
        return AffWild2VADataset(root, split, spec.preprocessing, **kw)

    def loss(self, outputs, target):
        valence, arousal = outputs
        return ccc_loss(valence, target[..., 0]) + ccc_loss(arousal, target[..., 1])

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        target = np.asarray(target)
        cv = ccc(outputs["valence"], target[..., 0])
        ca = ccc(outputs["arousal"], target[..., 1])
        return {"ccc": (cv + ca) / 2, "ccc_valence": cv, "ccc_arousal": ca}

    def details(self, outputs: Mapping[str, np.ndarray], target: np.ndarray, labels=()) -> dict[str, Any]:
        """CCC per dimension (valence, arousal)."""
        target = np.asarray(target)
        return regression_report({n: outputs[n] for n in VA_LABELS}, {n: target[..., i] for i, n in enumerate(VA_LABELS)},
                                 "ccc", ccc)

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        """Quadrant of the sequence's mean (valence, arousal): calibration subsets span the circumplex."""
        m = np.asarray(target).reshape(len(target), -1, 2).mean(1)
        return (m[:, 0] > 0).astype(int) * 2 + (m[:, 1] > 0).astype(int)


VA_TASK = register_task(VATask())
