"""Task "body": EmoReact multi-label bodily expression (reference/models.md §5).

Loss: BCE-with-logits over the 8 labels.  For fusion models the seed sums the
two streams' losses, BCE(body) + BCE(face); a fusion model in training mode
returns ``(mean logits, body logits, face logits)`` so :meth:`BodyTask.loss`
can do exactly that, and returns the mean logits alone when evaluated or exported.

Metrics (on logits; ranking metrics do not need the sigmoid): ROC-AUC micro
(the seed's model-selection metric), macro and per class; average precision
per class and their mean.  A class whose targets are all 0 or all 1 in the
evaluated set has no ROC-AUC / AP: it is NaN per class and left out of the
macro mean (scikit-learn raises instead).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.emoreact import LABELS
from ..spec import ModelSpec
from .tasks import Task, register_task
from .trainer import TrainConfig


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
    score = np.asarray(score, np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Sum over distinct thresholds of (recall step) x precision, as scikit-learn defines AP; NaN without positives."""
    y = np.asarray(y).ravel() > 0.5
    score = np.asarray(score, np.float64).ravel()
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
    logits = np.asarray(logits, np.float64)
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
    return out


def reference_config(**overrides: Any) -> TrainConfig:
    """The seed's recipe: SGD lr 0.01, momentum 0.9, wd 5e-4, batch 8, 12 epochs, steps at 20/40 (x0.1), seed 42.

    Gradient clipping at 20 is TSN/TSM's default ``--clip-gradient``.
    """
    base = dict(epochs=12, batch_size=8, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                schedule="step", milestones=(20, 40), gamma=0.1, grad_clip=20.0, seed=42)
    base.update(overrides)
    return TrainConfig(**base)


class BodyTask(Task):
    name = "body"
    metric = "roc_auc_micro"
    higher_is_better = True
    metric_scale = 0.01

    def __init__(self):
        self.last_report = None

    def dataset(self, root: Path, split: str, spec: ModelSpec, *, cache_dir=None, workers: int = 1,
                augment: bool = False, console=None, limit: int | None = None, cache_frames: int = 32):
        """EmoReact ``split`` preprocessed for ``spec`` (input kind, segments, size); see data/emoreact.py.

        ``augment`` turns on TSN random offsets, random crops and flips (training).
        """
        from ..data.emoreact import load_split

        cfg = spec.config
        ds = load_split(root, split, cfg["input"], cfg["segments"], cfg["size"], augment=augment,
                        cache_dir=cache_dir, cache_frames=cache_frames, workers=workers, console=console, limit=limit)
        self.last_report = ds.report
        return ds

    def loss(self, outputs, target):
        import torch.nn.functional as F

        if isinstance(outputs, tuple):           # fusion in training: (mean, body, face)
            return sum(F.binary_cross_entropy_with_logits(o, target) for o in outputs[1:])
        return F.binary_cross_entropy_with_logits(outputs, target)

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        return multilabel_metrics(outputs["logits"], target)


BODY_TASK = register_task(BodyTask())


def train_body(data: Path, out: Path, *, model_name: str, config: TrainConfig,
               model_overrides: Mapping[str, Any] | None = None, resume: bool = False, workers: int = 1,
               cache_dir: Path | None = None, cache_frames: int = 32, evaluate_test: bool = True,
               console=None) -> dict[str, Any]:
    """Train one TSN/TSM model (one stage, ``train``), then score the best epoch on the test split.

    Writes ``out/stages/train/{last,best}.pt``, ``out/checkpoint.pt`` and
    ``out/manifest.json`` (the same shape as the other tasks' runs).
    """
    from ..data.emoreact import SPLITS, read_split
    from ..fileio import sha256_file
    from ..models import create_model
    from ..runs import Run, provenance, save_checkpoint
    from .trainer import Trainer, predict, seed_everything

    overrides = dict(model_overrides or {})
    out, data = Path(out), Path(data)
    task = BODY_TASK
    counts = {"train": len(read_split(data, "train"))}   # a bad root or train.csv fails before the run dir exists
    for split in SPLITS[1:]:
        try:
            counts[split] = len(read_split(data, split))
        except Exception:
            counts[split] = 0
    run = Run(out, {})
    run.update(
        task="body",
        data={"root": str(data.resolve()),
              "csv_sha256": {s: sha256_file(data / f"{s}.csv") for s in SPLITS if (data / f"{s}.csv").exists()},
              "clips": counts,
              # export, bench, the INT8 guard and eval read the splits as training did (same cached frames)
              "dataset_kwargs": {"cache_frames": cache_frames,
                                 **({"cache_dir": str(Path(cache_dir).resolve())} if cache_dir is not None else {})}},
        config={"train": config.to_dict(), "model_name": model_name, "model": overrides, "stages": ["train"],
                "cache_frames": cache_frames},
        provenance=provenance(),
    )
    seed_everything(config.seed)
    model = create_model(model_name, **overrides)
    kw = dict(cache_dir=cache_dir, workers=workers, console=console, cache_frames=cache_frames)
    train_set = task.dataset(data, "train", model.spec, augment=True, **kw)
    val_set = task.dataset(data, "val", model.spec, **kw)
    reports = {"train": train_set.report.to_dict(), "val": val_set.report.to_dict()}
    if console is not None:
        console.print(f"[dim]train: {train_set.report.summary()}[/]")
        console.print(f"[dim]val: {val_set.report.summary()}[/]")
    result = Trainer(model, task, train_set, val_set, config, out / "stages" / "train", label="train",
                     console=console).fit(resume=resume)
    best = result["best"]
    metrics = {"val_roc_auc_micro": best["roc_auc_micro"], "val_roc_auc_macro": best["roc_auc_macro"],
               "val_ap_macro": best["ap_macro"], "best_epoch": result["best_epoch"] + 1,
               "train_clips": len(train_set), "val_clips": len(val_set),
               "val_per_class": {k: v for k, v in best.items() if k.startswith(("roc_auc_", "ap_"))}}
    if evaluate_test and counts.get("test"):
        test_set = task.dataset(data, "test", model.spec, **kw)
        reports["test"] = test_set.report.to_dict()
        outs, target = predict(model, test_set, batch_size=max(config.batch_size, 16))
        test = task.metrics(outs, target)
        metrics.update({"test_roc_auc_micro": test["roc_auc_micro"], "test_roc_auc_macro": test["roc_auc_macro"],
                        "test_ap_macro": test["ap_macro"], "test_clips": len(test_set),
                        "test_per_class": {k: v for k, v in test.items() if k.startswith(("roc_auc_", "ap_"))}})
    metrics["preprocess"] = reports
    save_checkpoint(out / "checkpoint.pt", model, model_name, overrides)
    run.update(metrics={"train": metrics}, stages_done=["train"], spec=model.spec.to_dict(), model=model_name)
    return metrics
