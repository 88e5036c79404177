"""Task "body": EmoReact multi-label bodily expression (reference/models.md §5).

Loss: BCE-with-logits over the 8 labels.  For fusion models the seed sums the
two streams' losses, BCE(body) + BCE(face); a fusion model in training mode
returns ``(mean logits, body logits, face logits)`` so :meth:`BodyTask.loss`
can do exactly that, and returns the mean logits alone when evaluated or exported.

Metrics (on logits; ranking metrics do not need the sigmoid): ROC-AUC micro
(the seed's model-selection metric), macro and per class; average precision
per class and their mean.  A class whose targets are all 0 or all 1 in the
evaluated set has no ROC-AUC / AP: it is NaN per class (``<key>_note`` says why; written as null)
and left out of the macro mean (scikit-learn raises instead).  NaN or inf logits are refused, as everywhere
(``metrics.finite``): ranked, a NaN would count as the highest score.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.emoreact import load_split
from ..labels import EMOREACT_LABELS as LABELS
from ..lazy import lazy_import
from ..spec import ModelSpec
from . import Task, register_task
from .metrics import ABSENT, finite, multilabel_report

F = lazy_import("torch.nn.functional", "train")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(xs)]
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def binary_roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); NaN if ``y`` has one class only."""
    y = np.asarray(y).ravel() > 0.5
    score = finite(score, "ROC-AUC").ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Sum over distinct thresholds of (recall step) x precision, as scikit-learn defines AP; NaN without positives."""
    y = np.asarray(y).ravel() > 0.5
    score = finite(score, "average precision").ravel()
    if not y.any():
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # last index of each run of equal scores
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_metrics(logits: np.ndarray, target: np.ndarray, labels=LABELS) -> dict[str, Any]:
    """ROC-AUC micro / macro / per class and AP per class / mean, keyed ``roc_auc_<Label>``, ``ap_<Label>``."""
    logits = finite(logits, "ROC-AUC/AP")
    target = np.asarray(target)
    aucs = np.array([binary_roc_auc(target[:, j], logits[:, j]) for j in range(target.shape[1])])
    aps = np.array([binary_average_precision(target[:, j], logits[:, j]) for j in range(target.shape[1])])
    out: dict[str, Any] = {
        "roc_auc_micro": binary_roc_auc(target.ravel(), logits.ravel()),
        "roc_auc_macro": float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan"),
        "ap_macro": float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan"),
    }
    out.update({f"roc_auc_{name}": float(v) for name, v in zip(labels, aucs)})
    out.update({f"ap_{name}": float(v) for name, v in zip(labels, aps)})
    for j, name in enumerate(labels):   # why a value is NaN travels with it (written as null: strict JSON)
        pos = bool((target[:, j] > 0.5).any())
        if not np.isfinite(aucs[j]):
            out[f"roc_auc_{name}_note"] = ABSENT if not pos else "no negative sample in split"
        if not np.isfinite(aps[j]):
            out[f"ap_{name}_note"] = ABSENT
    return out


class BodyTask(Task):
    name = "body"
    metric = "roc_auc_micro"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, *, cache_dir=None, workers: int | None = None,
                augment: bool = False, console=None, limit: int | None = None, cache_frames: int = 32):
        """EmoReact ``split`` preprocessed for ``spec`` (input kind, segments, size); see data/emoreact.py.

        ``augment`` turns on TSN random offsets, random crops and flips (training).
        """
        cfg = spec.config
        return load_split(root, split, cfg["input"], cfg["segments"], cfg["size"], augment=augment,
                          cache_dir=cache_dir, cache_frames=cache_frames, workers=workers, console=console, limit=limit)

    def loss(self, outputs, target):
        if isinstance(outputs, tuple):           # fusion in training: (mean, body, face)
            return sum(F.binary_cross_entropy_with_logits(o, target) for o in outputs[1:])
        return F.binary_cross_entropy_with_logits(outputs, target)

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        return multilabel_metrics(outputs["logits"], target)

    def details(self, outputs: Mapping[str, np.ndarray], target: np.ndarray, labels=()) -> dict[str, Any]:
        return multilabel_report(outputs["logits"], target, labels or LABELS, binary_roc_auc, binary_average_precision)


BODY_TASK = register_task(BodyTask())
