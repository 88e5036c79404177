"""The ERI task (Hume-Reaction) and the seed's three-stage recipe: audio, video, then fused.

Loss: MSE on the sigmoid intensities (the default; ``1 - Pearson`` is
available as ``--loss pcc``).  Metric: mean Pearson r over the 7 intensities
(the ABAW definition, constant predictions scoring 0).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.hume import LABELS, read_data_info
from ..data.preprocess import AVConfig, ClipJob, PrepReport, prepare_clips
from ..errors import DataError
from ..spec import ModelSpec
from .metrics import pearson_per_column
from .tasks import Task, register_task

DEFAULT_CACHE = ".cache/edgeaffect"


class AVClipDataset(Dataset):
    """Preprocessed face-video + MFCC clips read lazily from the feature cache.

    Items are ``{"video": float32 [T, 3, S, S] in [0, 1], "audio": float32 [n_mfcc, F], "target": ...}``
    restricted to the inputs the model's spec names.  ``augment`` flips whole
    clips horizontally at random (training only).
    """

    def __init__(self, files: Sequence[Path], targets: np.ndarray, input_names: Sequence[str],
                 ids: Sequence[str] = (), augment: bool = False):
        self.files = list(files)
        self.targets = np.asarray(targets, np.float32)
        self.input_names = tuple(input_names)
        self.ids = list(ids)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        with np.load(self.files[i], allow_pickle=False) as z:
            item: dict[str, Any] = {}
            if "video" in self.input_names:
                v = z["video"]
                if self.augment and torch.rand(()) < 0.5:
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

    def __init__(self):
        self.loss_kind = "mse"
        self.last_report: PrepReport | None = None

    def dataset(self, root: Path, split: str, spec: ModelSpec, *, cache_dir: str | os.PathLike | None = None,
                workers: int = 1, augment: bool = False, console=None, limit: int | None = None) -> AVClipDataset:
        clips = [c for c in read_data_info(root) if c.split == split]
        if not clips:
            raise DataError(f"{root}/data_info.csv has no {split!r} clips")
        if limit is not None:
            clips = clips[:limit]
        labelled = [c for c in clips if np.isfinite(c.labels).all()]
        if not labelled:
            raise DataError(f"the {split!r} split of {root} has no intensity labels (withheld?)")
        cfg = AVConfig.from_preprocessing(spec.preprocessing)
        cache = Path(cache_dir) if cache_dir else Path(root) / DEFAULT_CACHE
        ready, report = prepare_clips([ClipJob(c.file_id, c.video) for c in labelled], cfg, cache,
                                      workers=workers, console=console, label=f"preprocess {split}")
        self.last_report = report
        if not ready:
            raise DataError(f"no usable clip in the {split!r} split of {root}: {report.summary()}")
        keep = [c for c in labelled if c.file_id in ready]
        return AVClipDataset([ready[c.file_id] for c in keep], np.stack([c.labels for c in keep]),
                             spec.input_names, [c.file_id for c in keep], augment=augment)

    def loss(self, outputs, target):
        pred = outputs[0] if isinstance(outputs, tuple) else outputs
        if self.loss_kind == "pcc":
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

    def stratify_key(self, target: np.ndarray) -> np.ndarray:
        """Dominant emotion per clip, so calibration subsets cover every reaction type."""
        return np.asarray(target).argmax(1)


ERI_TASK = register_task(ERITask())


STAGES = ("audio", "video", "fused")
STAGE_MODELS = {"audio": "eri_audio", "video": "eri_video", "fused": "eri_dual_branch"}


def train_eri(data: Path, out: Path, *, config, stages: Sequence[str] = STAGES, model_overrides: Mapping[str, Any] | None = None,
              resume: bool = False, workers: int = 1, cache_dir: Path | None = None, loss: str = "mse",
              console=None) -> dict[str, Any]:
    """Run the seed's stages in order; the fused model starts from the unimodal branches.

    Writes ``out/stages/<stage>/{last,best}.pt``, ``out/checkpoint.pt`` (the last
    stage's best model) and ``out/manifest.json``.  With ``resume=True`` finished
    stages are skipped and the interrupted one continues from its last epoch.
    """
    from ..data.hume import read_data_info
    from ..fileio import sha256_file, load_checkpoint
    from ..models import create_model
    from ..runs import MANIFEST, Run, provenance, save_checkpoint
    from .trainer import Trainer, seed_everything

    overrides = dict(model_overrides or {})
    task = ERI_TASK
    task.loss_kind = loss
    out = Path(out)
    run = Run(out, {})
    prior = json.loads((out / MANIFEST).read_text()) if resume and (out / MANIFEST).exists() else {}
    done = set(prior.get("stages_done", [])) if resume else set()
    clips = read_data_info(data)
    run.update(
        task="eri",
        data={"root": str(Path(data).resolve()), "csv_sha256": sha256_file(Path(data) / "data_info.csv"),
              "clips": {s: sum(c.split == s for c in clips) for s in ("train", "val", "test")}},
        config={"train": config.to_dict(), "model": overrides, "stages": list(stages), "loss": loss},
        provenance=provenance(),
    )
    if prior.get("metrics"):
        run.update(metrics=prior["metrics"])
    trained: dict[str, torch.nn.Module] = {}
    metrics_all: dict[str, Any] = dict(prior.get("metrics", {}))
    final = None
    for stage in stages:
        if stage not in STAGE_MODELS:
            raise DataError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
        seed_everything(config.seed)
        model = create_model(STAGE_MODELS[stage], **overrides)
        stage_dir = out / "stages" / stage
        if stage == "fused":
            _init_fused(model, trained, out)
        if stage in done and (stage_dir / "best.pt").exists():
            model.load_state_dict(load_checkpoint(stage_dir / "best.pt", map_location="cpu")["model"])
            trained[stage] = model
            final = model
            continue
        train_set = task.dataset(data, "train", model.spec, cache_dir=cache_dir, workers=workers, augment=True, console=console)
        train_report = task.last_report
        val_set = task.dataset(data, "val", model.spec, cache_dir=cache_dir, workers=workers, console=console)
        if console is not None:
            console.print(f"[dim]{stage}: train {train_report.summary()}[/]")
            console.print(f"[dim]{stage}: val {task.last_report.summary()}[/]")
        trainer = Trainer(model, task, train_set, val_set, config, stage_dir, label=stage, console=console)
        result = trainer.fit(resume=resume)
        best = result["best"]
        stage_metrics = {"val_pearson": best["pearson"], "best_epoch": result["best_epoch"] + 1,
                         "val_mse": best["mse"], "train_clips": len(train_set), "val_clips": len(val_set),
                         "preprocess": {"train": train_report.to_dict(), "val": task.last_report.to_dict()}}
        if stage == "fused" or stage == stages[-1]:
            stage_metrics["val_pearson_per_class"] = best["pearson_per_class"]
        metrics_all[stage] = stage_metrics
        done.add(stage)
        run.update(metrics={stage: stage_metrics}, stages_done=sorted(done))
        trained[stage] = model
        final = model
    if final is not None:
        save_checkpoint(out / "checkpoint.pt", final, final.spec.name, overrides)
        run.update(spec=final.spec.to_dict(), model=final.spec.name)
    return metrics_all


def _init_fused(model: torch.nn.Module, trained: Mapping[str, torch.nn.Module], out: Path) -> None:
    """Copy the audio and video branch weights of the unimodal stages into the fused model."""
    for stage, branch in (("audio", "audio"), ("video", "video")):
        src = trained.get(stage)
        if src is None and (out / "stages" / stage / "best.pt").exists():
            state = load_checkpoint(out / "stages" / stage / "best.pt", map_location="cpu")["model"]
        elif src is not None:
            state = src.state_dict()
        else:
            continue
        sub = {k[len(branch) + 1:]: v for k, v in state.items() if k.startswith(branch + ".")}
        getattr(model, branch).load_state_dict(sub)
