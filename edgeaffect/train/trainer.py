"""A small, deterministic training loop shared by every task.

- best checkpoint by the task's validation metric, atomic checkpoint files;
- ``resume=True`` continues after the last completed epoch and gives the same
  weights as an uninterrupted run on CPU: each epoch reseeds every RNG from
  ``(seed, epoch)``, so nothing about an epoch depends on earlier ones except
  the model/optimizer state, which the checkpoint holds;
- data-parallel when launched by ``torchrun`` (gloo on CPU, nccl on GPU):
  a DistributedSampler shards the data, only rank 0 writes files.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import EdgeAffectError
from ..fileio import atomic_path, load_checkpoint, write_json
from ..logs import make_progress
from ..tasks import Task


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    optimizer: str = "adamw"          # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    dampening: float = 0.0
    nesterov: bool = False
    schedule: str = "cosine"          # cosine | step | constant
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["extra"] = dict(self.extra)
        return d


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not launched by torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def maybe_init_distributed(device: str) -> bool:
    """Join the process group torchrun describes in the environment; True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return True


def forward(model: nn.Module, batch: Mapping[str, torch.Tensor], input_names: list[str]):
    """Call a model with its named inputs positionally; always return a tuple of outputs."""
    out = model(*[batch[n] for n in input_names])
    return out if isinstance(out, tuple) else (out,)


def to_device(batch: Mapping[str, Any], device: str) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


HISTORY = "history.json"
"""Per stage, every epoch's record (``epoch_record``), rewritten each epoch; ``recipe.finish_run`` puts every
stage's into the manifest's ``history``, the same for every task."""


def epoch_record(epoch: int, train_loss: float, metrics: Mapping[str, Any], val_samples: int) -> dict[str, Any]:
    """One epoch in the history: its train loss and every scalar val metric (``val_<name>``), numbers only.

    ``epoch`` counts from 1, as the console and ``best_epoch`` do, so one run names an epoch one way."""
    scalars = {f"val_{k}": float(v) for k, v in metrics.items()
               if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
    return {"epoch": epoch, "train_loss": float(train_loss), **scalars,
            "val_samples": val_samples}   # every item of the val set, in order (as eval reads it)


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 32, device: str = "cpu",
            input_names: list[str] | None = None, output_names: list[str] | None = None,
            transform: Callable[[dict], dict] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run a model over a dataset; returns (outputs by name, targets)."""
    core = getattr(model, "module", model)
    spec = core.spec
    input_names = input_names or spec.input_names
    output_names = output_names or spec.output_names
    was_training = model.training
    model.eval()
    outs: list[tuple[torch.Tensor, ...]] = []
    targets = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        if transform is not None:
            batch = transform(batch)
        batch = to_device(batch, device)
        outs.append(tuple(o.float().cpu() for o in forward(model, batch, input_names)))
        targets.append(batch["target"].cpu())
    model.train(was_training)
    merged = {name: torch.cat([o[i] for o in outs]).numpy() for i, name in enumerate(output_names)}
    return merged, torch.cat(targets).numpy()


def _train_forward(model, batch, input_names, batch_size: int):
    """``forward`` in training mode, with BatchNorm's one-value-per-channel failure said in one line."""
    try:
        return forward(model, batch, input_names)
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise EdgeAffectError(f"a BatchNorm layer of {model.spec.name if hasattr(model, 'spec') else 'the model'} "
                              f"got one value per channel in training (batch {batch_size}, feature maps shrunk to "
                              f"1x1): use a larger --batch-size or larger inputs") from None


class Trainer:
    """Train one model on one task; see the module docstring for the guarantees."""

    def __init__(self, model: nn.Module, task: Task, train_set: Dataset, val_set: Dataset,
                 config: TrainConfig, stage_dir: Path, *, label: str = "train",
                 batch_transform: Callable[[dict, torch.Generator], dict] | None = None,
                 save_fn: Callable[[Path, nn.Module], None] | None = None,
                 loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None, console=None):
        self.model = model
        self.task = task
        self.loss = loss or task.loss            # a recipe's loss options (e.g. ERI's kind) ride on a partial
        self.train_set = train_set
        self.val_set = val_set
        self.cfg = config
        self.stage_dir = Path(stage_dir)
        self.label = label
        self.batch_transform = batch_transform
        self.save_fn = save_fn
        self.console = console
        self.spec = model.spec
        self.history: list[dict[str, Any]] = []

    # -- setup -------------------------------------------------------------------------------------
    def _optimizer(self, params) -> torch.optim.Optimizer:
        c = self.cfg
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, dampening=c.dampening,
                                   weight_decay=c.weight_decay, nesterov=c.nesterov)
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        raise ValueError(f"unknown optimizer {c.optimizer!r}")

    def _lr_factor(self, epoch: int) -> float:
        c = self.cfg
        if epoch < c.warmup_epochs:
            return (epoch + 1) / (c.warmup_epochs + 1)
        if c.schedule == "step":
            return c.gamma ** sum(epoch >= m for m in c.milestones)
        if c.schedule == "cosine":
            span = max(c.epochs - c.warmup_epochs, 1)
            return 0.5 * (1 + math.cos(math.pi * (epoch - c.warmup_epochs) / span)) * 0.99 + 0.01
        return 1.0

    # -- main loop ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train; returns ``{"best": metrics at the best epoch, "best_epoch": e, "history": [...]}``."""
        c = self.cfg
        place = self._place()
        model = place.model
        params = [p for p in model.parameters() if p.requires_grad]
        opt = self._optimizer(params)
        last = self.stage_dir / "last.pt"
        start_epoch, best = self._restore(last, model, opt, place.device) if resume and last.exists() else (0, _Best())
        with self._progress(place.rank) as progress:
            # in a log the epoch line below says what this bar would: log=False keeps it out
            epochs_bar = progress.add_task("epochs", total=c.epochs, completed=start_epoch, info="", log=False)
            for epoch in range(start_epoch, c.epochs):
                seed_everything(c.seed * 100003 + epoch)
                gen = torch.Generator().manual_seed(c.seed * 100003 + epoch)
                for g in opt.param_groups:
                    g["lr"] = c.lr * self._lr_factor(epoch)
                train_loss = self._train_epoch(place, self._loader(place, epoch, gen), opt, params, gen, progress,
                                               f"epoch {epoch + 1}/{c.epochs}")
                out, target = predict(model, self.val_set, batch_size=max(c.batch_size, 16), device=place.device)
                metrics = self.task.metrics(out, target)
                value = float(metrics[self.task.metric])
                record = epoch_record(epoch + 1, train_loss, metrics, len(target))
                self.history.append(record)
                improved = best.offer(value, epoch, metrics, self.task.higher_is_better)
                if place.rank == 0:
                    self._checkpoint(last, model, opt, epoch, best, improved)
                if place.distributed:
                    torch.distributed.barrier()
                if place.rank == 0:
                    progress.console.print(
                        f"{self.label} epoch {epoch + 1}/{c.epochs}: train loss {record['train_loss']:.4f}  "
                        f"val {self.task.metric} {value:.4f} on all {len(target)} val samples" + ("  (best)" if improved else ""))
                progress.update(epochs_bar, advance=1,
                                info=f"loss {record['train_loss']:.4f}  val {self.task.metric} {value:.4f}  best {best.value:.4f}@{best.epoch + 1}")
        model.load_state_dict(load_checkpoint(self.stage_dir / "best.pt", map_location=place.device)["model"])
        model.to("cpu")
        return {"best": best.metrics, "best_epoch": best.epoch, "history": self.history}

    def _place(self) -> "_Placement":
        """Join torchrun's process group (if launched by it), move the model to this rank's device and wrap it
        for data-parallel training."""
        distributed = maybe_init_distributed(self.cfg.device)
        rank, world = dist_info()
        device = self.cfg.device
        if distributed and device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        model = self.model.to(device)
        train_model: nn.Module = model
        if distributed:
            train_model = nn.parallel.DistributedDataParallel(model, device_ids=[int(device.split(':')[1])] if device.startswith("cuda") else None)
        return _Placement(device, model, train_model, distributed, rank, world)

    def _restore(self, last: Path, model: nn.Module, opt: torch.optim.Optimizer, device: str) -> tuple[int, "_Best"]:
        """Load the last completed epoch's state; returns (the epoch to start at, the best so far)."""
        state = load_checkpoint(last, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        self.history = state["history"]
        return state["epoch"] + 1, _Best(state["best_value"], state["best_epoch"], state["best_metrics"])

    def _progress(self, rank: int):
        """The epochs-and-steps bar (rank 0 only)."""
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        return make_progress(self.console, self.label, TextColumn(f"[bold]{self.label}[/] " + "{task.description}"),
                             BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                             TimeRemainingColumn(), disable=rank != 0, transient=False,
                             min_gap_s=10.0)   # in a log: a line per tenth of an epoch that runs 100 s or more

    def _loader(self, place: "_Placement", epoch: int, gen: torch.Generator) -> DataLoader:
        """This epoch's shuffled training batches: this rank's shard when distributed."""
        c = self.cfg
        if place.distributed:
            sampler = torch.utils.data.DistributedSampler(self.train_set, num_replicas=place.world, rank=place.rank,
                                                          shuffle=True, seed=c.seed, drop_last=True)
            sampler.set_epoch(epoch)
            return DataLoader(self.train_set, batch_size=c.batch_size, sampler=sampler,
                              num_workers=c.num_workers, drop_last=True)
        return DataLoader(self.train_set, batch_size=c.batch_size, shuffle=True, generator=gen,
                          num_workers=c.num_workers, drop_last=len(self.train_set) > c.batch_size)

    def _train_epoch(self, place: "_Placement", loader: DataLoader, opt: torch.optim.Optimizer, params: list,
                     gen: torch.Generator, progress, description: str) -> float:
        """One pass over ``loader``; returns the mean training loss per sample."""
        c = self.cfg
        place.train_model.train()
        steps = progress.add_task(description, total=len(loader), info="")
        running, n_seen = 0.0, 0
        for batch in loader:
            if self.batch_transform is not None:
                batch = self.batch_transform(batch, gen)
            batch = to_device(batch, place.device)
            outputs = _train_forward(place.train_model, batch, self.spec.input_names, c.batch_size)
            loss = self.loss(outputs if len(outputs) > 1 else outputs[0], batch["target"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip:
                nn.utils.clip_grad_norm_(params, c.grad_clip)
            opt.step()
            bs = len(batch["target"])
            running += float(loss.detach()) * bs
            n_seen += bs
            progress.update(steps, advance=1, info=f"loss {running / max(n_seen, 1):.4f}")
        progress.remove_task(steps)
        return running / max(n_seen, 1)

    def _checkpoint(self, last: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int, best: "_Best",
                    improved: bool) -> None:
        """Write best.pt (when improved), last.pt (what ``resume`` reads) and the stage's history."""
        if improved:
            self._save(self.stage_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch, "metrics": best.metrics})
        self._save(last, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                          "best_value": best.value, "best_epoch": best.epoch,
                          "best_metrics": best.metrics, "history": self.history, "config": self.cfg.to_dict()})
        write_json(self.stage_dir / HISTORY, self.history)   # the run's manifest collects it

    def _save(self, path: Path, obj: dict) -> None:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)


class _Placement(NamedTuple):
    """Where one training process runs: its device, the model and its data-parallel wrapper, its rank."""

    device: str
    model: nn.Module
    train_model: nn.Module
    distributed: bool
    rank: int
    world: int


@dataclass
class _Best:
    """The best validation result so far (epoch -1: none yet)."""

    value: float = -math.inf
    epoch: int = -1
    metrics: dict = field(default_factory=dict)

    def offer(self, value: float, epoch: int, metrics: dict, higher_is_better: bool) -> bool:
        """Keep this epoch's result if it beats the best (the first always does); True if it did."""
        sign = 1.0 if higher_is_better else -1.0
        if self.epoch >= 0 and not sign * value > sign * self.value:
            return False
        self.value, self.epoch, self.metrics = value, epoch, metrics
        return True
