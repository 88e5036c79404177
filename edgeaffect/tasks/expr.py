"""Task ``expr``: Aff-Wild2 expression classification (8 classes), scored by macro F1 as in ABAW.

Loss: cross-entropy over the 8 logits; targets of -1 (unannotated) are ignored
by the loss and by the metrics.  Metric: the unweighted mean of the 8 per-class
F1 scores (a class with no true and no predicted sample scores 0, as
scikit-learn's ``f1_score(labels=range(8), average='macro', zero_division=0)``).  The metrics name the
classes averaged over and the ones absent from the split, with the mean over the present ones beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.affwild2_expr import expr_split
from ..labels import EXPR_LABELS
from ..lazy import lazy_import
from ..spec import ModelSpec
from . import Task, register_task
from .metrics import classification_report, finite

F = lazy_import("torch.nn.functional", "train")


def per_class_f1(pred: np.ndarray, target: np.ndarray, n_classes: int = len(EXPR_LABELS)) -> np.ndarray:
    """F1 of each class from integer predictions and targets (targets < 0 are dropped)."""
    pred = finite(pred, "macro F1").ravel().astype(np.int64)
    target = np.asarray(target).ravel()
    keep = target >= 0
    pred, target = pred[keep], target[keep]
    conf = np.bincount(target * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1)            # predicted + true = 2tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)


def macro_f1(pred: np.ndarray, target: np.ndarray, n_classes: int = len(EXPR_LABELS)) -> float:
    return float(per_class_f1(pred, target, n_classes).mean())


class ExprTask(Task):
    name = "expr"
    metric = "macro_f1"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, frame_step: int = 1,
                max_per_video: int | None = None, val_frame_step: int | None = None,
                label_fraction: float = 1.0, label_seed: int = 0, **kw: Any):
        """The labeled faces of ``split`` as a run saw them (its ``dataset_kwargs``).

        ``train`` is the run's labeled subset (``label_fraction`` drawn with ``label_seed``), so pruning's
        fine-tune never sees the labels a semi-supervised run held back; ``val`` keeps every
        ``val_frame_step``-th frame.
        """
        size = int(spec.preprocessing.get("face_size", 112))
        return expr_split(root, split, size, frame_step, max_per_video, val_frame_step, label_fraction, label_seed)[0]

    def loss(self, outputs, target):
        return F.cross_entropy(outputs, target.long(), ignore_index=-1)

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        logits = finite(outputs["logits"], "macro F1")
        target = np.asarray(target).astype(np.int64).ravel()
        pred = logits.argmax(-1)
        f1 = per_class_f1(pred, target)
        keep = target >= 0
        present = np.bincount(target[keep], minlength=len(EXPR_LABELS)) > 0
        return {"macro_f1": float(f1.mean()),
                "accuracy": float((pred[keep] == target[keep]).mean()) if keep.any() else 0.0,
                "per_class_f1": {name: float(v) for name, v in zip(EXPR_LABELS, f1)},
                # ABAW averages over all 8 classes; a class the split lacks counts 0, so say which
                "macro_f1_classes": list(EXPR_LABELS),
                "absent_classes": [name for name, p in zip(EXPR_LABELS, present) if not p],
                "macro_f1_present": float(f1[present].mean()) if present.any() else 0.0}

    def details(self, outputs: Mapping[str, np.ndarray], target: np.ndarray, labels=()) -> dict[str, Any]:
        return classification_report(outputs["logits"], target, labels or EXPR_LABELS)

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        return np.asarray(target).astype(np.int64).ravel()


EXPR_TASK = register_task(ExprTask())
