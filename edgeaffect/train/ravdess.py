"""The RAVDESS task (8 emotions, accuracy) and the reference's training recipe.

Recipe of the self-attention fusion reference (reference/models.md §2): SGD lr 0.04,
momentum 0.9, dampening 0.9, weight decay 1e-3, no Nesterov, batch 8, 100 epochs, lr x0.1
at epochs 40, 55, 65, 70, no gradient clipping; modality dropout ``softhard`` expands every
batch x4 on the raw inputs.  The best epoch is chosen by validation accuracy, then the test
actors are scored.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.ravdess import DEFAULT_TEST_ACTORS, DEFAULT_VAL_ACTORS, Preprocessing, prepare_split
from ..errors import DataError
from ..spec import ModelSpec
from .metrics import accuracy
from .tasks import Task, register_task

DEFAULT_CACHE = ".cache/edgeaffect/ravdess"
STAGE = "fused"


def reference_config(**overrides: Any):
    """The authors' recipe as a :class:`TrainConfig`; keyword overrides replace single fields."""
    from .trainer import TrainConfig

    base = dict(epochs=100, batch_size=8, optimizer="sgd", lr=0.04, momentum=0.9, dampening=0.9,
                weight_decay=1e-3, nesterov=False, schedule="step", milestones=(40, 55, 65, 70, 200, 250),
                gamma=0.1, warmup_epochs=0, grad_clip=0.0, seed=1)
    base.update(overrides)
    return TrainConfig(**base)


class RavdessTask(Task):
    name = "ravdess"
    metric = "accuracy"
    higher_is_better = True
    metric_scale = 0.01

    def __init__(self):
        self.last_problems: list[str] = []
        self.last_counts: dict[str, int] = {}
        self.last_content_sha256: str = ""

    def dataset(self, root: Path, split: str, spec: ModelSpec, *, test_actors: Sequence[int] = DEFAULT_TEST_ACTORS,
                val_actors: Sequence[int] = DEFAULT_VAL_ACTORS, cache_dir: str | os.PathLike | None = None,
                augment: bool = False, console=None, vocal: str = "speech", **_: Any):
        pre = Preprocessing.from_spec(spec.preprocessing)
        cache = Path(cache_dir) if cache_dir else Path(root) / DEFAULT_CACHE
        prepared = prepare_split(root, split, pre, test_actors, val_actors, cache, augment=augment, console=console,
                                 vocal=vocal)
        self.last_problems = prepared.problems
        self.last_counts = dict(prepared.counts)
        self.last_content_sha256 = prepared.content_sha256
        return prepared.dataset

    def loss(self, outputs, target):
        import torch.nn.functional as F

        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        return F.cross_entropy(logits, target.long())

    def metrics(self, outputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict[str, Any]:
        logits = outputs["logits"] if "logits" in outputs else next(iter(outputs.values()))
        pred = np.asarray(logits).argmax(-1)
        y = np.asarray(target).ravel().astype(int)
        per_class = {int(c): float((pred[y == c] == c).mean()) for c in np.unique(y)}
        return {"accuracy": accuracy(logits, y), "per_class_accuracy": per_class}

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        return np.asarray(target).ravel().astype(int)


RAVDESS_TASK = register_task(RavdessTask())


def train_ravdess(data: Path, out: Path, *, config, fusion: str = "ia", dropout_mode: str = "softhard",
                  model_overrides: Mapping[str, Any] | None = None, test_actors: Sequence[int] = DEFAULT_TEST_ACTORS,
                  val_actors: Sequence[int] = DEFAULT_VAL_ACTORS, pretrained: Path | None = None,
                  cache_dir: Path | None = None, vocal: str = "speech", resume: bool = False,
                  console=None) -> dict[str, Any]:
    """Train one fusion variant; writes ``out/{checkpoint.pt, manifest.json, stages/fused/}``.

    Returns the metrics written under ``manifest["metrics"]["fused"]``.
    """
    from ..fileio import sha256_file
    from ..models import create_model
    from ..models.ravdess import load_efficientface
    from ..runs import Run, provenance, save_checkpoint
    from .modality_dropout import modality_dropout
    from .trainer import Trainer, predict, seed_everything

    overrides = dict(model_overrides or {})
    name = f"ravdess_{fusion}"
    out = Path(out)
    seed_everything(config.seed)
    model = create_model(name, **overrides)
    pre_info = None
    if pretrained is not None:
        pre_info = {"path": str(pretrained), "sha256": sha256_file(pretrained),
                    **load_efficientface(model.visual_model, pretrained)}
        if console is not None:
            console.print(f"[dim]EfficientFace weights from {pretrained}: {pre_info['loaded']} tensors loaded, "
                          f"{pre_info['skipped']} skipped[/]")
    task = RAVDESS_TASK
    ds_kw = {"test_actors": [int(a) for a in test_actors], "val_actors": [int(a) for a in val_actors],
             "vocal": vocal, **({"cache_dir": str(cache_dir)} if cache_dir else {})}
    train_set = task.dataset(data, "train", model.spec, augment=True, console=console, **ds_kw)
    report = {"train": _report(task, len(train_set))}
    hashes = {"train": task.last_content_sha256}
    val_set = task.dataset(data, "val", model.spec, console=console, **ds_kw)
    report["val"] = _report(task, len(val_set))
    hashes["val"] = task.last_content_sha256
    if console is not None:
        for split, r in report.items():
            console.print(f"[dim]{split}: {r['clips']} clips ready; skipped {r['skipped'] or 'none'}[/]")
            for line in r["examples"]:
                console.print(f"[yellow]  {line}[/]")
    run = Run(out, {})
    run.update(
        task="ravdess", model=name,
        data={"root": str(Path(data).resolve()), "content_sha256": hashes,
              "clips": {s: r["clips"] for s, r in report.items()}, "dataset_kwargs": ds_kw},
        config={"train": config.to_dict(), "model": overrides, "fusion": fusion, "dropout_mode": dropout_mode,
                "pretrained": pre_info},
        provenance=provenance(),
    )
    trainer = Trainer(model, task, train_set, val_set, config, out / "stages" / STAGE, label=f"{name} {dropout_mode}",
                      batch_transform=modality_dropout(dropout_mode, "audio", "video"), console=console)
    result = trainer.fit(resume=resume)
    best = result["best"]
    metrics: dict[str, Any] = {"val_accuracy": best["accuracy"], "best_epoch": result["best_epoch"] + 1,
                               "val_per_class_accuracy": best["per_class_accuracy"],
                               "train_clips": len(train_set), "val_clips": len(val_set), "preprocess": report}
    try:
        test_set = task.dataset(data, "test", model.spec, console=console, **ds_kw)
    except DataError as exc:
        if console is not None:
            console.print(f"[yellow]no test score: {exc}[/]")
    else:
        outputs, target = predict(model, test_set, batch_size=max(config.batch_size, 16))
        metrics["test_accuracy"] = task.metrics(outputs, target)["accuracy"]
        metrics["test_clips"] = len(test_set)
        hashes["test"] = task.last_content_sha256
        run.update(data={"content_sha256": hashes})
    save_checkpoint(out / "checkpoint.pt", model, name, overrides)
    run.update(metrics={STAGE: metrics}, spec=model.spec.to_dict(), stages_done=[STAGE])
    return metrics


def _report(task: RavdessTask, n: int) -> dict[str, Any]:
    return {"clips": n, "skipped": dict(task.last_counts), "examples": task.last_problems[:3]}
