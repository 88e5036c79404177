"""The RAVDESS task: 8 emotions from face video and voice, scored by accuracy.

The split is by actor (``test_actors``/``val_actors``, the authors' released
split by default); the returned dataset's ``report`` lists the clips that were
skipped and a hash of the clips used.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.ravdess import DEFAULT_TEST_ACTORS, DEFAULT_VAL_ACTORS, Preprocessing, prepare_split
from ..labels import RAVDESS_LABELS
from ..lazy import lazy_import
from ..spec import ModelSpec
from . import Task, register_task
from .metrics import accuracy, classification_report, finite

F = lazy_import("torch.nn.functional", "train")

DEFAULT_CACHE = ".cache/edgeaffect/ravdess"


class RavdessTask(Task):
    name = "ravdess"
    metric = "accuracy"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, *, test_actors: Sequence[int] = DEFAULT_TEST_ACTORS,
                val_actors: Sequence[int] = DEFAULT_VAL_ACTORS, cache_dir: str | os.PathLike | None = None,
                augment: bool = False, console=None, vocal: str = "speech", **_: Any):
        pre = Preprocessing.from_spec(spec.preprocessing)
        cache = Path(cache_dir) if cache_dir else Path(root) / DEFAULT_CACHE
        return prepare_split(root, split, pre, test_actors, val_actors, cache, augment=augment, console=console,
                             vocal=vocal).dataset

    def loss(self, outputs, target):
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        return F.cross_entropy(logits, target.long())

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        logits = finite(outputs["logits"] if "logits" in outputs else next(iter(outputs.values())), "accuracy")
        pred = logits.argmax(-1)
        y = np.asarray(target).ravel().astype(int)
        per_class = {int(c): float((pred[y == c] == c).mean()) for c in np.unique(y)}
        return {"accuracy": accuracy(logits, y), "per_class_accuracy": per_class}

    def details(self, outputs: Mapping[str, np.ndarray], target: np.ndarray, labels=()) -> dict[str, Any]:
        logits = outputs["logits"] if "logits" in outputs else next(iter(outputs.values()))
        return classification_report(logits, target, labels or RAVDESS_LABELS)

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        return np.asarray(target).ravel().astype(int)


RAVDESS_TASK = register_task(RavdessTask())
