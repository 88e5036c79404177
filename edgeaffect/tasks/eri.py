"""The ERI task (Hume-Reaction): 7 reaction intensities from face video and voice.

Loss: MSE on the sigmoid intensities (the default; ``kind="pcc"`` gives
``1 - Pearson``, ``--loss pcc`` in training).  Metric: mean Pearson r over the
7 intensities (the ABAW definition, constant predictions scoring 0).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.hume import read_data_info
from ..data.preprocess import ClipJob, ClipPreprocessing, PrepReport, prepare_clips
from ..errors import DataError
from ..labels import ERI_LABELS as LABELS
from ..lazy import lazy_import
from ..spec import ModelSpec
from . import Task, register_task
from .metrics import pearson_per_column, regression_report

torch = lazy_import("torch", "train")

DEFAULT_CACHE = ".cache/edgeaffect"
LOSSES = ("mse", "pcc")


class AVClipDataset:
    """Preprocessed face-video + MFCC clips read lazily from the feature cache.

    Items are ``{"video": float32 [T, 3, S, S] in [0, 1], "audio": float32 [n_mfcc, F], "target": ...}``
    restricted to the inputs the model's spec names.  ``augment`` flips whole
    clips horizontally at random (training; NumPy's generator, which the trainer
    reseeds every epoch).  ``report`` says what preprocessing kept and skipped.
    """

    def __init__(self, files: Sequence[Path], targets: np.ndarray, input_names: Sequence[str],
                 ids: Sequence[str] = (), augment: bool = False, report: PrepReport | None = None):
        self.files = list(files)
        self.targets = np.asarray(targets, np.float32)
        self.input_names = tuple(input_names)
        self.ids = list(ids)
        self.augment = augment
        self.report = report

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        with np.load(self.files[i], allow_pickle=False) as z:
            item: dict[str, Any] = {}
            if "video" in self.input_names:
                v = z["video"]
                if self.augment and np.random.random() < 0.5:
                    v = v[:, :, ::-1]
                item["video"] = np.ascontiguousarray(v.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
            if "audio" in self.input_names:
                item["audio"] = z["audio"].astype(np.float32)
        item["target"] = self.targets[i]
        return item


class ERITask(Task):
    name = "eri"
    metric = "pearson"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, *, cache_dir: str | os.PathLike | None = None,
                workers: int | None = None, augment: bool = False, console=None, limit: int | None = None) -> AVClipDataset:
        clips = [c for c in read_data_info(root) if c.split == split]
        if not clips:
            raise DataError(f"{root}/data_info.csv has no {split!r} clips")
        if limit is not None:
            clips = clips[:limit]
        labelled = [c for c in clips if np.isfinite(c.labels).all()]
        if not labelled:
            raise DataError(f"the {split!r} split of {root} has no intensity labels (withheld?)")
        cfg = ClipPreprocessing.from_spec(spec.preprocessing)
        cache = Path(cache_dir) if cache_dir else Path(root) / DEFAULT_CACHE
        ready, report = prepare_clips([ClipJob(c.file_id, c.video) for c in labelled], cfg, cache,
                                      workers=workers, console=console, label=f"preprocess {split}")
        if not ready:
            raise DataError(f"no usable clip in the {split!r} split of {root}: {report.summary()}")
        keep = [c for c in labelled if c.file_id in ready]
        return AVClipDataset([ready[c.file_id] for c in keep], np.stack([c.labels for c in keep]),
                             spec.input_names, [c.file_id for c in keep], augment=augment, report=report)

    def loss(self, outputs, target, kind: str = "mse"):
        pred = outputs[0] if isinstance(outputs, tuple) else outputs
        if kind == "pcc":
            pc = pred - pred.mean(0)
            tc = target - target.mean(0)
            r = (pc * tc).sum(0) / torch.clamp(torch.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0)), min=1e-8)
            return 1 - r.mean()
        return torch.nn.functional.mse_loss(pred, target)

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        pred = outputs["intensities"] if "intensities" in outputs else next(iter(outputs.values()))
        per = pearson_per_column(pred, target)
        return {"pearson": float(per.mean()), "pearson_per_class": {l: float(v) for l, v in zip(LABELS, per)},
                "mse": float(np.mean((np.asarray(pred) - target) ** 2))}

    def details(self, outputs: Mapping[str, np.ndarray], target: np.ndarray, labels=()) -> dict[str, Any]:
        """Pearson r per intensity."""
        pred = outputs["intensities"] if "intensities" in outputs else next(iter(outputs.values()))
        pred, target = np.asarray(pred).reshape(len(pred), -1), np.asarray(target).reshape(len(target), -1)
        names = list(labels) if len(labels) == pred.shape[1] else list(LABELS)
        return regression_report({n: pred[:, i] for i, n in enumerate(names)}, {n: target[:, i] for i, n in enumerate(names)},
                                 "pearson", lambda p, y: pearson_per_column(p, y)[0])

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        """Dominant emotion per clip, so calibration subsets cover every reaction type."""
        return np.asarray(target).argmax(1)


ERI_TASK = register_task(ERITask())
