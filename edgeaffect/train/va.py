"""VA training (Aff-Wild2 valence-arousal): the reference's Adam recipe on one model.

The task itself (dataset, CCC loss, metric) is :mod:`edgeaffect.tasks.va`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import EdgeAffectError
from ..logs import make_progress
from ..models import create_model
from ..runs import Manifest
from ..tasks.va import VA_TASK
from .recipe import Recipe, TrainOptions, finish_run, open_manifest
from .trainer import TrainConfig, Trainer, seed_everything

VARIANT_MODELS = {"edge": "va_jca_edge", "jca": "va_jca", "jca_lite": "va_jca_lite"}


def reference_recipe(epochs: int = 30, batch_size: int = 8, lr: float = 1e-3, device: str = "cpu",
                     seed: int = 0) -> TrainConfig:
    """Adam as the reference (lr 1e-3, decayed x0.8 every 2 epochs after epoch 5, no weight decay).

    The reference trains only the fusion with batch 64; here the backbones train
    too, with smaller batches, so gradients are clipped at 5.
    """
    milestones = tuple(range(7, max(epochs, 7), 2))
    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, weight_decay=0.0,
                       schedule="step", milestones=milestones, gamma=0.8, grad_clip=5.0, seed=seed, device=device)


@dataclass(frozen=True)
class VATrainOptions(TrainOptions):
    """Everything ``edgeaffect train va`` decides; stored in the run manifest."""

    data: Path
    variant: str = "edge"              # edge | jca | jca_lite (VARIANT_MODELS)
    model_overrides: Mapping[str, Any] = field(default_factory=dict)   # frame_size, width, subclips
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    stride: int = 1                    # shift between training sequences, in frames
    max_train: int | None = None
    max_val: int | None = None
    cache_dir: Path | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.variant not in VARIANT_MODELS:
            raise EdgeAffectError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANT_MODELS)}")

    @property
    def model_name(self) -> str:
        return VARIANT_MODELS[self.variant]

    def train_config(self) -> TrainConfig:
        return reference_recipe(self.epochs, self.batch_size, self.lr, self.device, self.seed)

    def dataset_kwargs(self) -> dict[str, Any]:
        return {"cache_dir": str(Path(self.cache_dir).resolve())} if self.cache_dir is not None else {}


def train(opt: VATrainOptions, out: Path, *, resume: bool = False, console=None) -> Manifest:
    """Train one VA model; writes ``out/stages/train/{last,best}.pt``, ``out/checkpoint.pt``, ``out/manifest.json``.

    The manifest's ``metrics.train`` holds the best validation CCCs and ``best_epoch`` (1-based).
    """
    out = Path(out)
    cfg, overrides = opt.train_config(), dict(opt.model_overrides)
    seed_everything(cfg.seed)
    model = create_model(opt.model_name, **overrides)
    sets = _read_splits(opt, model.spec, console)
    manifest = open_manifest(out, "va", opt, resume=resume, model=opt.model_name,
                             config={"train": cfg.to_dict(), "model": overrides},
                             data={s: d.report.to_dict() for s, d in sets.items()})
    trainer = Trainer(model, VA_TASK, sets["train"], sets["val"], cfg, out / "stages" / "train", label=opt.model_name,
                      console=console)
    result = trainer.fit(resume=resume)
    best = result["best"]
    manifest.finish_stage(out, "train", {
        "val_ccc": best["ccc"], "val_ccc_valence": best["ccc_valence"], "val_ccc_arousal": best["ccc_arousal"],
        "best_epoch": result["best_epoch"] + 1, "train_sequences": len(sets["train"]),
        "val_sequences": len(sets["val"]), "unreadable_images": sum(d.unreadable_images for d in sets.values())})
    return finish_run(out, manifest, model, opt.model_name, overrides)


def _read_splits(opt: VATrainOptions, spec, console) -> dict[str, Any]:
    """The train and val splits (audio mel spectrograms computed or read from the cache, with a progress bar)."""
    sets = {}
    with make_progress(console, "va", disable=console is None, transient=True) as progress:
        for split in ("train", "val"):
            bar = progress.add_task(f"{split}: audio mel spectrograms", total=None)
            sets[split] = VA_TASK.dataset(opt.data, split, spec, stride=opt.stride, cache_dir=opt.cache_dir,
                                          limit=getattr(opt, f"max_{split}"), augment=split == "train",
                                          progress=lambda done, total, bar=bar: progress.update(bar, completed=done, total=total))
    if console is not None:
        for split, ds in sets.items():
            _print_report(console, split, ds)
    return sets


def _print_report(console, split: str, ds) -> None:
    rep = ds.report
    skipped = ", ".join(f"{k}: {v}" for k, v in rep.skipped.items()) or "none"
    console.print(f"[dim]{split}: {rep.videos} videos, {len(ds)} sequences; skipped videos: {skipped}; "
                  f"unannotated rows {rep.rows_unannotated}, out-of-range rows {rep.rows_out_of_range}[/]")
    for line in rep.messages[:5]:
        console.print(f"  [yellow]{line}[/]")
    if len(rep.messages) > 5:
        console.print(f"  [yellow]... and {len(rep.messages) - 5} more[/]")


RECIPE = Recipe("va", VATrainOptions, train)
