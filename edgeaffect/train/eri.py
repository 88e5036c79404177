"""ERI training: the seed's three-stage recipe, audio, video, then the fused model from both branches.

The task itself (dataset, loss, metric) is :mod:`edgeaffect.tasks.eri`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import torch

from ..data.hume import read_data_info
from ..errors import EdgeAffectError
from ..fileio import load_checkpoint, sha256_file
from ..models import create_model
from ..runs import Manifest
from ..tasks.eri import ERI_TASK, LOSSES
from .recipe import Recipe, TrainOptions, finish_run, open_manifest
from .trainer import TrainConfig, Trainer, seed_everything

STAGES = ("audio", "video", "fused")
# the fused model a run trains -> the registry model of each stage (the unimodal stages' branches load into it)
FAMILIES = {
    "eri_dual_branch": {"audio": "eri_audio", "video": "eri_video", "fused": "eri_dual_branch"},
    "eri_int8": {"audio": "eri_audio", "video": "eri_int8_video", "fused": "eri_int8"},
}
DEFAULT_MODEL = "eri_dual_branch"
STAGE_MODELS = FAMILIES[DEFAULT_MODEL]


@dataclass(frozen=True)
class ERITrainOptions(TrainOptions):
    """Everything ``edgeaffect train eri`` decides; stored in the run manifest."""

    data: Path
    model: str = DEFAULT_MODEL         # the fused model (FAMILIES); its stages train the matching branches
    stages: tuple[str, ...] = STAGES
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    warmup_epochs: int | None = None   # default: 1 when training more than 3 epochs
    loss: str = "mse"                  # mse | pcc (1 - Pearson)
    model_overrides: Mapping[str, Any] = field(default_factory=dict)   # frames, face_size, audio_seconds
    workers: int = 1
    cache_dir: Path | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise EdgeAffectError(f"--loss must be mse or pcc, not {self.loss!r}")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise EdgeAffectError(f"unknown stage(s) {', '.join(bad)}; stages are {', '.join(STAGES)}")
        if self.model not in FAMILIES:
            raise EdgeAffectError(f"unknown ERI model {self.model!r}; choose from {', '.join(FAMILIES)}")

    def train_config(self) -> TrainConfig:
        warmup = self.warmup_epochs if self.warmup_epochs is not None else int(self.epochs > 3)
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           device=self.device, warmup_epochs=warmup)

    def dataset_kwargs(self) -> dict[str, Any]:
        return {"cache_dir": str(Path(self.cache_dir).resolve())} if self.cache_dir is not None else {}


def train(opt: ERITrainOptions, out: Path, *, resume: bool = False, console=None) -> Manifest:
    """Run the stages in order; the fused model starts from the unimodal branches.

    Writes ``out/stages/<stage>/{last,best}.pt``, ``out/checkpoint.pt`` (the last
    stage's best model) and ``out/manifest.json`` (metrics keyed by stage).  With
    ``resume=True`` finished stages are skipped and the interrupted one continues
    from its last epoch.
    """
    out, cfg, overrides = Path(out), opt.train_config(), dict(opt.model_overrides)
    clips = read_data_info(opt.data)
    manifest = open_manifest(out, "eri", opt, resume=resume, config={"train": cfg.to_dict(), "model": overrides},
                             data={"csv_sha256": sha256_file(Path(opt.data) / "data_info.csv"),
                                   "clips": {s: sum(c.split == s for c in clips) for s in ("train", "val", "test")}})
    done = set(manifest.stages_done) if resume else set()
    kw = dict(cache_dir=opt.cache_dir, workers=opt.workers, console=console)
    trained: dict[str, torch.nn.Module] = {}
    for stage in opt.stages:
        seed_everything(cfg.seed)
        model = create_model(FAMILIES[opt.model][stage], **overrides)
        stage_dir = out / "stages" / stage
        if stage == "fused":
            _init_fused(model, trained, out)
        if stage in done and (stage_dir / "best.pt").exists():
            model.load_state_dict(load_checkpoint(stage_dir / "best.pt", map_location="cpu")["model"])
            trained[stage] = model
            continue
        train_set = ERI_TASK.dataset(opt.data, "train", model.spec, augment=True, **kw)
        val_set = ERI_TASK.dataset(opt.data, "val", model.spec, **kw)
        if console is not None:
            console.print(f"[dim]{stage}: train {train_set.report.summary()}[/]")
            console.print(f"[dim]{stage}: val {val_set.report.summary()}[/]")
        trainer = Trainer(model, ERI_TASK, train_set, val_set, cfg, stage_dir, label=stage, console=console,
                          loss=partial(ERI_TASK.loss, kind=opt.loss))
        result = trainer.fit(resume=resume)
        best = result["best"]
        stage_metrics = {"val_pearson": best["pearson"], "best_epoch": result["best_epoch"] + 1,
                         "val_mse": best["mse"], "train_clips": len(train_set), "val_clips": len(val_set),
                         "preprocess": {"train": train_set.report.to_dict(), "val": val_set.report.to_dict()}}
        if stage == "fused" or stage == opt.stages[-1]:
            stage_metrics["val_pearson_per_class"] = best["pearson_per_class"]
        manifest.finish_stage(out, stage, stage_metrics)
        trained[stage] = model
    if trained:
        manifest = finish_run(out, manifest, model, model.spec.name, overrides)
    return manifest


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


RECIPE = Recipe("eri", ERITrainOptions, train)
