"""RAVDESS training: the self-attention fusion reference's recipe, then a test-actor score.

Recipe (reference/models.md §2): SGD lr 0.04, momentum 0.9, dampening 0.9, weight decay 1e-3, no
Nesterov, batch 8, 100 epochs, lr x0.1 at epochs 40, 55, 65, 70, no gradient clipping; modality
dropout ``softhard`` expands every batch x4 on the raw inputs.  The best epoch is chosen by
validation accuracy, then the test actors are scored.  The task itself is :mod:`edgeaffect.tasks.ravdess`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.ravdess import DEFAULT_TEST_ACTORS, DEFAULT_VAL_ACTORS, VOCAL_CHANNELS
from ..data.report import record, tell
from ..errors import DataError, EdgeAffectError
from ..fileio import sha256_file
from ..models import create_model
from ..runs import Manifest
from ..tasks.ravdess import RAVDESS_TASK
from .recipe import Recipe, TrainOptions, finish_run, open_manifest

STAGE = "fused"
FUSIONS = ("ia", "it", "lt")
DROPOUTS = ("softhard", "noise", "none")


def reference_config(**overrides: Any):
    """The authors' recipe as a :class:`TrainConfig`; keyword overrides replace single fields."""
    from .trainer import TrainConfig

    base = dict(epochs=100, batch_size=8, optimizer="sgd", lr=0.04, momentum=0.9, dampening=0.9,
                weight_decay=1e-3, nesterov=False, schedule="step", milestones=(40, 55, 65, 70, 200, 250),
                gamma=0.1, warmup_epochs=0, grad_clip=0.0, seed=1)
    base.update(overrides)
    return TrainConfig(**base)


@dataclass(frozen=True)
class RavdessTrainOptions(TrainOptions):
    """Everything ``edgeaffect train ravdess`` decides; stored in the run manifest."""

    data: Path
    fusion: str = "ia"                 # ia | it | lt
    dropout_mode: str = "softhard"     # softhard | noise | none
    heads: int = 1
    frames: int = 15
    face_size: int = 224
    epochs: int = 100
    batch_size: int = 8
    lr: float = 0.04
    milestones: tuple[int, ...] = (40, 55, 65, 70, 200, 250)
    test_actors: tuple[int, ...] = tuple(DEFAULT_TEST_ACTORS)
    val_actors: tuple[int, ...] = tuple(DEFAULT_VAL_ACTORS)
    vocal: str = "speech"
    pretrained: Path | None = None     # EfficientFace checkpoint for the visual backbone
    cache_dir: Path | None = None
    seed: int = 1
    device: str = "cpu"

    def __post_init__(self):
        for option, value, choices in (("--fusion", self.fusion, FUSIONS), ("--dropout-mode", self.dropout_mode, DROPOUTS),
                                       ("--vocal", self.vocal, VOCAL_CHANNELS)):
            if value not in choices:
                raise EdgeAffectError(f"{option} must be one of {', '.join(choices)}, not {value!r}")
        if self.face_size % 16:
            raise EdgeAffectError(f"--face-size must be a multiple of 16, not {self.face_size}")

    @property
    def model_name(self) -> str:
        return f"ravdess_{self.fusion}"

    def model_overrides(self) -> dict[str, Any]:
        return {"heads": self.heads, "frames": self.frames, "face_size": self.face_size}

    def train_config(self):
        return reference_config(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                milestones=tuple(self.milestones), seed=self.seed, device=self.device)

    def dataset_kwargs(self) -> dict[str, Any]:
        return {"test_actors": [int(a) for a in self.test_actors], "val_actors": [int(a) for a in self.val_actors],
                "vocal": self.vocal, **({"cache_dir": str(self.cache_dir)} if self.cache_dir else {})}


def train(opt: RavdessTrainOptions, out: Path, *, resume: bool = False, console=None) -> Manifest:
    """Train one fusion variant; writes ``out/{checkpoint.pt, manifest.json, stages/fused/}``.

    The manifest's ``metrics.fused`` holds the validation and test scores.
    """
    from .modality_dropout import modality_dropout
    from .trainer import Trainer, predict, seed_everything

    out, cfg, overrides = Path(out), opt.train_config(), opt.model_overrides()
    seed_everything(cfg.seed)
    model = create_model(opt.model_name, **overrides)
    pretrained = _load_pretrained(model, opt.pretrained, console)
    kw = dict(console=console, **opt.dataset_kwargs())
    sets = {"train": RAVDESS_TASK.dataset(opt.data, "train", model.spec, augment=True, **kw),
            "val": RAVDESS_TASK.dataset(opt.data, "val", model.spec, **kw)}
    report = {split: _report(ds, console, split) for split, ds in sets.items()}
    manifest = open_manifest(out, "ravdess", opt, resume=resume, model=opt.model_name,
                             config={"train": cfg.to_dict(), "model": overrides, "pretrained": pretrained},
                             data={"content_sha256": {s: ds.report.content_sha256 for s, ds in sets.items()},
                                   "clips": {s: r["clips"] for s, r in report.items()}})
    trainer = Trainer(model, RAVDESS_TASK, sets["train"], sets["val"], cfg, out / "stages" / STAGE,
                      label=f"{opt.model_name} {opt.dropout_mode}",
                      batch_transform=modality_dropout(opt.dropout_mode, "audio", "video"), console=console)
    result = trainer.fit(resume=resume)
    best = result["best"]
    metrics: dict[str, Any] = {"val_accuracy": best["accuracy"], "best_epoch": result["best_epoch"] + 1,
                               "val_per_class_accuracy": best["per_class_accuracy"],
                               "train_clips": len(sets["train"]), "val_clips": len(sets["val"]), "preprocess": report}
    try:
        test_set = RAVDESS_TASK.dataset(opt.data, "test", model.spec, **kw)
    except DataError as exc:
        if console is not None:
            console.print(f"[yellow]no test score: {exc}[/]")
    else:
        outputs, target = predict(model, test_set, batch_size=max(cfg.batch_size, 16))
        metrics["test_accuracy"] = RAVDESS_TASK.metrics(outputs, target)["accuracy"]
        metrics["test_clips"] = len(test_set)
        report["test"] = _report(test_set, console, "test")
        manifest.data["content_sha256"]["test"] = test_set.report.content_sha256
    manifest.finish_stage(out, STAGE, metrics)
    return finish_run(out, manifest, model, opt.model_name, overrides)


def _load_pretrained(model, path: Path | None, console) -> dict[str, Any] | None:
    """EfficientFace weights into the visual backbone; what was loaded, for the manifest."""
    if path is None:
        return None
    from ..models.ravdess import load_efficientface

    info = {"path": str(path), "sha256": sha256_file(path), **load_efficientface(model.visual_model, path)}
    if console is not None:
        console.print(f"[dim]EfficientFace weights from {path}: {info['loaded']} tensors loaded, "
                      f"{info['skipped']} skipped[/]")
    return info


def _report(ds, console, split: str) -> dict[str, Any]:
    """The split's manifest entry (every problem line), told on the console in one line."""
    counts = {k: n for k, n in ds.report.counts.items() if not k.startswith("not_")}
    if console is not None:
        console.print(f"[dim]{split}: {len(ds)} clips ready[/]")
    tell(console, split, ds.report.problems, counts)
    return {"clips": len(ds), "skipped": dict(ds.report.counts), "problems": record(ds.report.problems, counts)}


RECIPE = Recipe("ravdess", RavdessTrainOptions, train)
