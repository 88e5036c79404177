"""Body training (EmoReact): one TSN / TSM model with the seed's SGD recipe, then a test-split score.

The task itself (dataset, BCE loss, ROC-AUC metrics) is :mod:`edgeaffect.tasks.body`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.emoreact import INPUT_KINDS, SPLITS, read_split
from ..errors import EdgeAffectError
from ..fileio import sha256_file
from ..models import create_model
from ..models.body import ARCHS, FUSION_STREAMS, model_name
from ..runs import Manifest
from ..tasks.body import BODY_TASK
from .recipe import Recipe, TrainOptions, finish_run, open_manifest
from .trainer import TrainConfig, Trainer, predict, seed_everything


def reference_config(**overrides: Any) -> TrainConfig:
    """The seed's recipe: SGD lr 0.01, momentum 0.9, wd 5e-4, batch 8, 12 epochs, steps at 20/40 (x0.1), seed 42.

    Gradient clipping at 20 is TSN/TSM's default ``--clip-gradient``.
    """
    base = dict(epochs=12, batch_size=8, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                schedule="step", milestones=(20, 40), gamma=0.1, grad_clip=20.0, seed=42)
    base.update(overrides)
    return TrainConfig(**base)


@dataclass(frozen=True)
class BodyTrainOptions(TrainOptions):
    """Everything ``edgeaffect train body`` decides; stored in the run manifest."""

    data: Path
    input: str = "body"                # face | body | fullbody | fusion
    arch: str = "mobilenet_v2"
    segments: int = 3
    shift: bool = False                # TSM
    shift_div: int = 8
    size: int = 224
    width: float = 1.0
    partial_bn: bool = True
    fusion_streams: str = "separate"   # --input fusion: separate | shared
    epochs: int = 12
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"             # sgd (the seed's) | adamw (wd 1e-4)
    cache_frames: int = 32
    workers: int = 1
    cache_dir: Path | None = None
    evaluate_test: bool = True
    seed: int = 42
    device: str = "cpu"

    def __post_init__(self):
        for option, value, choices in (("--input", self.input, INPUT_KINDS), ("--arch", self.arch, ARCHS),
                                       ("--fusion-streams", self.fusion_streams, FUSION_STREAMS),
                                       ("--optimizer", self.optimizer, ("sgd", "adamw"))):
            if value not in choices:
                raise EdgeAffectError(f"{option} must be one of {', '.join(choices)}, not {value!r}")

    @property
    def model_name(self) -> str:
        return model_name(self.arch, self.shift)

    def model_overrides(self) -> dict[str, Any]:
        o = {"input": self.input, "segments": self.segments, "size": self.size, "shift_div": self.shift_div,
             "width": self.width, "partial_bn": self.partial_bn}
        return {**o, "fusion_streams": self.fusion_streams} if self.input == "fusion" else o

    def train_config(self) -> TrainConfig:
        opt = {} if self.optimizer == "sgd" else {"optimizer": "adamw", "weight_decay": 1e-4}
        return reference_config(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                                device=self.device, **opt)

    def dataset_kwargs(self) -> dict[str, Any]:
        # export, bench, the INT8 guard and eval read the splits as training did (same cached frames)
        return {"cache_frames": self.cache_frames,
                **({"cache_dir": str(Path(self.cache_dir).resolve())} if self.cache_dir is not None else {})}


def train(opt: BodyTrainOptions, out: Path, *, resume: bool = False, console=None) -> Manifest:
    """Train one TSN/TSM model (one stage, ``train``), then score the best epoch on the test split.

    Writes ``out/stages/train/{last,best}.pt``, ``out/checkpoint.pt`` and
    ``out/manifest.json`` (the same shape as the other tasks' runs).
    """
    out, data = Path(out), Path(opt.data)
    cfg, overrides = opt.train_config(), opt.model_overrides()
    # every label file is validated before any preprocessing (and before the run folder is written);
    # only an absent test.csv is allowed
    has_test = any(p.name.lower() == "test.csv" for p in data.iterdir()) if data.is_dir() else False
    counts = {split: len(read_split(data, split)) for split in SPLITS if split != "test" or has_test}
    counts.setdefault("test", 0)
    manifest = open_manifest(out, "body", opt, resume=resume, model=opt.model_name,
                             config={"train": cfg.to_dict(), "model": overrides},
                             data={"csv_sha256": {s: sha256_file(data / f"{s}.csv") for s in SPLITS
                                                  if (data / f"{s}.csv").exists()}, "clips": counts})
    seed_everything(cfg.seed)
    model = create_model(opt.model_name, **overrides)
    kw = dict(cache_dir=opt.cache_dir, workers=opt.workers, console=console, cache_frames=opt.cache_frames)
    sets = {"train": BODY_TASK.dataset(data, "train", model.spec, augment=True, **kw),
            "val": BODY_TASK.dataset(data, "val", model.spec, **kw)}
    if console is not None:
        for split, ds in sets.items():
            console.print(f"[dim]{split}: {ds.report.summary()}[/]")
    result = Trainer(model, BODY_TASK, sets["train"], sets["val"], cfg, out / "stages" / "train", label="train",
                     console=console).fit(resume=resume)
    metrics = {**_scores("val", result["best"]), "best_epoch": result["best_epoch"] + 1,
               "train_clips": len(sets["train"]), "val_clips": len(sets["val"])}
    if opt.evaluate_test and counts.get("test"):
        sets["test"] = BODY_TASK.dataset(data, "test", model.spec, **kw)
        outs, target = predict(model, sets["test"], batch_size=max(cfg.batch_size, 16))
        metrics.update({**_scores("test", BODY_TASK.metrics(outs, target)), "test_clips": len(sets["test"])})
    metrics["preprocess"] = {split: ds.report.to_dict() for split, ds in sets.items()}
    manifest.finish_stage(out, "train", metrics)
    return finish_run(out, manifest, model, opt.model_name, overrides)


def _scores(split: str, m: dict[str, Any]) -> dict[str, Any]:
    """ROC-AUC micro/macro, AP macro and the per-class scores of one split, keyed ``<split>_...``."""
    return {f"{split}_roc_auc_micro": m["roc_auc_micro"], f"{split}_roc_auc_macro": m["roc_auc_macro"],
            f"{split}_ap_macro": m["ap_macro"],
            f"{split}_per_class": {k: v for k, v in m.items() if k.startswith(("roc_auc_", "ap_"))}}


RECIPE = Recipe("body", BodyTrainOptions, train)
