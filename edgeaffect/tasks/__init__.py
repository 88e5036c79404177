"""Tasks: what a dataset split looks like and how a model is scored (no torch needed).

Every stage after training (export parity, calibration, the accuracy guard,
bench, eval) asks the task for real samples and a metric through this one
interface, so no stage needs per-model code.  A task's dataset is a plain
map-style object (``len`` and ``[i]``, which ``torch.utils.data.DataLoader``
accepts as is) yielding dicts ``{input_name: np.ndarray, ..., "target":
np.ndarray}`` whose input names match the model's
:class:`~edgeaffect.spec.ModelSpec`.  Tasks are stateless singletons: what a
read reports travels on the dataset it returns (``dataset.report``).

Only :meth:`Task.loss` needs torch, and imports it when called; the training
side decides which loss options to pass (e.g. ERI's ``kind``).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import EdgeAffectError
from ..spec import ModelSpec

_TASKS: dict[str, "Task"] = {}
_MODULES = ("eri", "fer2013", "va", "expr", "ravdess", "body")


class Task:
    """Base class; subclasses set ``name``/``metric`` and implement the hooks."""

    name: str = ""
    metric: str = ""             # the key of metrics() that selects checkpoints and guards quantization
    higher_is_better: bool = True
    metric_scale: float = 1.0    # "1 point" of the metric in its own units (accuracy: 0.01)

    def dataset(self, root: Path, split: str, spec: ModelSpec, **kw: Any):
        """A map-style dataset of preprocessed NumPy samples of ``split``."""
        raise NotImplementedError

    def loss(self, outputs, target):
        """Training loss (torch) from the model's raw outputs (tensor or tuple) and the target tensor."""
        raise NotImplementedError

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        """Scores from outputs keyed by the spec's output names; must contain ``self.metric``."""
        raise NotImplementedError

    def details(self, outputs: Mapping[str, np.ndarray], target: np.ndarray, labels=()) -> dict[str, Any]:
        """Scores per class, label or dimension for eval: ``per_class`` ({name: {score: value}}) and, for
        classification, ``confusion_matrix``; ``labels`` are the model's (the task's own names otherwise)."""
        return {}

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        """Per-sample group labels for stratified calibration subsets (default: one group)."""
        return np.zeros(len(target), dtype=int)


def register_task(task: Task) -> Task:
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    _import_tasks()
    if name not in _TASKS:
        raise EdgeAffectError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def list_tasks() -> list[str]:
    _import_tasks()
    return sorted(_TASKS)


def _import_tasks() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")
