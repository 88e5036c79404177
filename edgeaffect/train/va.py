"""Task "va": Aff-Wild2 valence-arousal regression per sub-clip, scored by CCC.

Loss as the reference: ``(1 - CCC(valence)) + (1 - CCC(arousal))`` with each
CCC taken over the whole flattened batch, rho = cov / (sigma_x sigma_y + 1e-8)
and unbiased standard deviations.  Metric: CCC over every scored sub-clip of the
split (``metrics.ccc``); the main value is the mean of CCC_V and CCC_A (the
reference selects checkpoints by their sum).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..spec import ModelSpec
from .metrics import ccc
from .tasks import Task, register_task
from .trainer import TrainConfig


def ccc_loss(pred, target, eps: float = 1e-8):
    """1 - CCC over all elements (torch), the reference's CCCLoss."""
    import torch

    x, y = pred.reshape(-1).float(), target.reshape(-1).float()
    vx, vy = x - x.mean(), y - y.mean()
    rho = (vx * vy).sum() / (torch.sqrt((vx ** 2).sum()) * torch.sqrt((vy ** 2).sum()) + eps)
    sx, sy = x.std(), y.std()
    return 1 - 2 * rho * sx * sy / (sx ** 2 + sy ** 2 + (x.mean() - y.mean()) ** 2)


def reference_recipe(epochs: int = 30, batch_size: int = 8, lr: float = 1e-3, device: str = "cpu",
                     seed: int = 0) -> TrainConfig:
    """Adam as the reference (lr 1e-3, decayed x0.8 every 2 epochs after epoch 5, no weight decay).

    The reference trains only the fusion with batch 64; here the backbones train
    too, with smaller batches, so gradients are clipped at 5.
    """
    milestones = tuple(range(7, max(epochs, 7), 2))
    return TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, weight_decay=0.0,
                       schedule="step", milestones=milestones, gamma=0.8, grad_clip=5.0, seed=seed, device=device)


class VATask(Task):
    name = "va"
    metric = "ccc"
    higher_is_better = True
    metric_scale = 0.01

    def dataset(self, root: Path, split: str, spec: ModelSpec, **kw: Any):
        from ..data.affwild2_va import AffWild2VADataset

        return AffWild2VADataset(root, split, spec.preprocessing, **kw)

    def loss(self, outputs, target):
        valence, arousal = outputs
        return ccc_loss(valence, target[..., 0]) + ccc_loss(arousal, target[..., 1])

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        target = np.asarray(target)
        cv = ccc(outputs["valence"], target[..., 0])
        ca = ccc(outputs["arousal"], target[..., 1])
        return {"ccc": (cv + ca) / 2, "ccc_valence": cv, "ccc_arousal": ca}

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        """Quadrant of the sequence's mean (valence, arousal): calibration subsets span the circumplex."""
        m = np.asarray(target).reshape(len(target), -1, 2).mean(1)
        return (m[:, 0] > 0).astype(int) * 2 + (m[:, 1] > 0).astype(int)


VA_TASK = register_task(VATask())


def train_va(data: Path, out: Path, model_name: str, overrides: Mapping[str, Any], settings: Mapping[str, Any], *,
             resume: bool = False, cache_dir: Path | None = None, device: str = "cpu", console=None) -> dict[str, Any]:
    """Train one VA model; writes ``out/stages/train/{last,best}.pt``, ``out/checkpoint.pt``, ``out/manifest.json``.

    ``settings``: variant, epochs, batch_size, lr, stride, max_train, max_val, seed (stored for ``--resume``).
    Returns the best validation metrics with ``model`` and ``best_epoch`` (1-based).
    """
    from rich.progress import Progress

    from ..models import create_model
    from ..runs import CHECKPOINT, Run, provenance, save_checkpoint
    from .trainer import Trainer, seed_everything

    out = Path(out)
    if not resume and (out / CHECKPOINT).exists():
        from ..errors import EdgeAffectError

        raise EdgeAffectError(f"{out} already holds a finished run; choose another --out or --resume it")
    cfg = reference_recipe(settings["epochs"], settings["batch_size"], settings["lr"], device, settings["seed"])
    seed_everything(cfg.seed)
    model = create_model(model_name, **overrides)
    task = VA_TASK
    sets = {}
    with Progress(console=console, disable=console is None, transient=True) as progress:
        for split in ("train", "val"):
            bar = progress.add_task(f"{split}: audio mel spectrograms", total=None)
            sets[split] = task.dataset(data, split, model.spec, stride=settings["stride"], cache_dir=cache_dir,
                                       limit=settings.get(f"max_{split}"), augment=split == "train",
                                       progress=lambda done, total, bar=bar: progress.update(bar, completed=done, total=total))
    if console is not None:
        for split, ds in sets.items():
            _print_report(console, split, ds)
    run = Run(out, {})
    run.update(task="va", model=model_name,
               data={"root": str(Path(data).resolve()), **{s: d.report.to_dict() for s, d in sets.items()}},
               config={"train": cfg.to_dict(), "model": dict(overrides), "settings": dict(settings)},
               provenance=provenance())
    trainer = Trainer(model, task, sets["train"], sets["val"], cfg, out / "stages" / "train", label=model_name,
                      console=console)
    result = trainer.fit(resume=resume)
    best = result["best"]
    metrics = {"val_ccc": best["ccc"], "val_ccc_valence": best["ccc_valence"], "val_ccc_arousal": best["ccc_arousal"],
               "best_epoch": result["best_epoch"] + 1, "train_sequences": len(sets["train"]),
               "val_sequences": len(sets["val"]),
               "unreadable_images": sum(d.unreadable_images for d in sets.values())}
    save_checkpoint(out / CHECKPOINT, model, model_name, dict(overrides))
    run.update(spec=model.spec.to_dict(), metrics={"train": metrics}, stages_done=["train"])
    return {"model": model_name, **metrics}


def _print_report(console, split: str, ds) -> None:
    rep = ds.report
    skipped = ", ".join(f"{k}: {v}" for k, v in rep.skipped.items()) or "none"
    console.print(f"[dim]{split}: {rep.videos} videos, {len(ds)} sequences; skipped videos: {skipped}; "
                  f"unannotated rows {rep.rows_unannotated}, out-of-range rows {rep.rows_out_of_range}[/]")
    for line in rep.messages[:5]:
        console.print(f"  [yellow]{line}[/]")
    if len(rep.messages) > 5:
        console.print(f"  [yellow]... and {len(rep.messages) - 5} more[/]")
