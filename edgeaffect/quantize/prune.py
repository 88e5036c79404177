"""Structured channel pruning with torch-pruning, then fine-tuning with the project's Trainer.

torch-pruning's dependency graph keeps coupled channels consistent (residual
adds, depthwise convs, BatchNorm, concatenations).  Layers whose channels are
tied to attention heads or to the model's outputs are never roots of a pruning
group, so the transformer width and the output size stay as the spec says.
Zeroed weights (unstructured sparsity) are not offered: dense kernels run them
at the same speed.  A pruned checkpoint stores the channel counts that differ
from the registered architecture, so :func:`edgeaffect.runs.load_model` can rebuild it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import EdgeAffectError
from ..fileio import atomic_dir, write_json
from ..lazy import lazy_import

F = lazy_import("torch.nn.functional", "train")
torch = lazy_import("torch", "train")
tp = lazy_import("torch_pruning", "prune")

MAX_RATIO = 0.9


@dataclass(frozen=True)
class PruneConfig:
    """``export_run(prune=...)``: prune this fraction of channels, fine-tune, and export ``<run>/pruned-<ratio>/``."""

    ratio: float
    importance: str = "magnitude"     # magnitude | taylor
    finetune_epochs: int = 5

    def check(self) -> "PruneConfig":
        """One line for a ratio outside (0, 0.9] or a negative epoch count, before anything runs."""
        check_ratio(self.ratio)
        if self.finetune_epochs < 0:
            raise EdgeAffectError(f"--finetune-epochs must be >= 0, got {self.finetune_epochs}")
        return self


def check_ratio(ratio: float) -> float:
    if not (0 < ratio <= MAX_RATIO):
        raise EdgeAffectError(f"prune ratio {ratio:g} is outside (0, {MAX_RATIO:g}]: it is the fraction of channels removed")
    return float(ratio)


def pruned_dirname(ratio: float) -> str:
    return f"pruned-{ratio:g}"


# -- pruning ------------------------------------------------------------------------------------------
def example_inputs(spec, batch: int = 2):
    return tuple(torch.from_numpy(v) for v in spec.dummy_inputs(batch).values())


def protected_layers(model) -> list:
    """Layers never pruned at their outputs: attention (head-shaped), the final output layer, and those a
    model names in ``unprunable_layers()`` (widths its graph ties in ways the tracer cannot follow)."""
    from torch import nn

    keep = list(model.unprunable_layers()) if hasattr(model, "unprunable_layers") else []
    for m in model.modules():
        if hasattr(m, "heads") or isinstance(m, nn.MultiheadAttention):
            keep.append(m)
    weighted = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if weighted:
        keep.append(weighted[-1])
    return keep


def count(model, spec) -> dict[str, float]:
    macs, params = tp.utils.count_ops_and_params(model, example_inputs(spec, 1))
    return {"params": int(params), "gflops": round(2 * float(macs) / 1e9, 4)}


def prune_model(model, ratio: float, *, importance: str = "magnitude", branch_ratios: Mapping[str, float] | None = None,
                calib_batches: Sequence[Any] = (), loss_fn=None, round_to: int | None = 8):
    """Prune ``model`` in place (a fraction ``ratio`` of channels per group) and return it.

    ``importance``: ``magnitude`` (L2 of the group's weights) or ``taylor`` (|w * dL/dw| accumulated on
    ``calib_batches`` with ``loss_fn(model, batch)``).  ``branch_ratios`` maps submodule names
    (e.g. ``{"video": 0.5, "audio": 0.2}``) to their own ratio.  ``round_to`` keeps channel counts
    multiples of 8 (SIMD-friendly).
    """
    check_ratio(ratio)
    if importance == "magnitude":
        imp = tp.importance.GroupMagnitudeImportance(p=2)
    elif importance == "taylor":
        imp = tp.importance.GroupTaylorImportance()
    else:
        raise EdgeAffectError(f"unknown importance {importance!r}; choose magnitude or taylor")
    per_module = {}
    for name, r in (branch_ratios or {}).items():
        sub = dict(model.named_modules()).get(name)
        if sub is None or name == "":
            raise EdgeAffectError(f"model {model.spec.name} has no branch {name!r}")
        per_module[sub] = check_ratio(r)
    spec = model.spec
    model.eval()
    if importance == "taylor" and (not calib_batches or loss_fn is None):
        raise EdgeAffectError("taylor importance needs training batches to compute gradients")
    # Channel-preserving ops the tracer cannot follow (a temporal shift's slices) are bypassed while
    # the dependency graph is built; they keep working on the pruned channels afterwards.
    bypassed = [m for m in model.modules() if getattr(m, "channel_identity", False)]
    try:
        for m in bypassed:
            m.bypass = True
        try:
            pruner = tp.pruner.MetaPruner(model, example_inputs(spec), importance=imp, pruning_ratio=ratio,
                                          pruning_ratio_dict=per_module or None,
                                          ignored_layers=protected_layers(model), round_to=round_to)
        finally:
            for m in bypassed:
                m.bypass = False
        if importance == "taylor":
            model.train()
            model.zero_grad()
            for batch in calib_batches:
                loss_fn(model, batch).backward()
        pruner.step()
    except (IndexError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        # torch-pruning traces channel couplings; a graph it cannot map (a new model whose channel
        # split or shuffle is not declared in unprunable_layers()) fails here. One line, not a traceback.
        raise EdgeAffectError(f"torch-pruning cannot prune {spec.name}: its channel dependency graph failed "
                              f"({type(exc).__name__}: {exc}); nothing was written") from None
    model.zero_grad(set_to_none=True)
    model.eval()
    return model


class _Distill:
    """A task proxy whose loss mixes the task loss with MSE to the unpruned teacher's outputs."""

    def __init__(self, task, teacher, alpha: float, input_names: list[str]):
        self._task, self._teacher, self.alpha, self._names = task, teacher.eval(), alpha, input_names
        self._teacher_out = None

    def __getattr__(self, name):
        return getattr(self._task, name)

    def batch_transform(self, batch, gen):
        with torch.no_grad():
            out = self._teacher(*[batch[n] for n in self._names])
        self._teacher_out = out if isinstance(out, tuple) else (out,)
        return batch

    def loss(self, outputs, target):
        base = self._task.loss(outputs, target)
        outs = outputs if isinstance(outputs, tuple) else (outputs,)
        kd = sum(F.mse_loss(o, t) for o, t in zip(outs, self._teacher_out))
        return (1 - self.alpha) * base + self.alpha * kd


def prune_run(run_dir: str | Path, ratio: float, *, importance: str = "magnitude", finetune_epochs: int = 5,
              branch_ratios: Mapping[str, float] | None = None, distill: float = 0.0, lr: float = 5e-4,
              batch_size: int = 16, data_root: str | Path | None = None, seed: int = 0, console=None) -> Path:
    """Prune a run's model, fine-tune it, and write ``<run>/pruned-<ratio>/`` (checkpoint + manifest).

    Returns the new run directory; it is a complete run (export, quantize and bench take it as is).
    """
    from ..runs import writer_lock

    ratio = _check_options(ratio, finetune_epochs, distill)
    with writer_lock(run_dir, "edgeaffect quantize prune"):
        return _prune_locked(run_dir, ratio, importance=importance, finetune_epochs=finetune_epochs,
                             branch_ratios=branch_ratios, distill=distill, lr=lr, batch_size=batch_size,
                             data_root=data_root, seed=seed, console=console)


def _prune_locked(run_dir, ratio: float, *, importance, finetune_epochs, branch_ratios, distill, lr, batch_size,
                  data_root, seed, console) -> Path:
    from ..runs import CHECKPOINT, load_run, open_run, save_checkpoint, structure_diff
    from ..train.trainer import seed_everything
    from .calibration import load_split

    run, model = open_run(run_dir)
    task, train = load_split(run, "train", data_root)
    _, val = load_split(run, "val", data_root)
    seed_everything(seed)
    measure = _Measure(run.spec, val, str(data_root or run.data_dir))
    before, teacher = measure(model), copy.deepcopy(model).eval()
    batches = _taylor_batches(train, batch_size, seed) if importance == "taylor" else []
    prune_model(model, ratio, importance=importance, branch_ratios=branch_ratios, calib_batches=batches,
                loss_fn=lambda m, b: task.loss(m(*[b[n] for n in run.spec.input_names]), b["target"]))
    after_prune = measure(model)
    dest = run.path / pruned_dirname(ratio)
    with atomic_dir(dest) as tmp:
        history = _finetune(model, task, teacher, train, val, tmp / "stages" / "finetune", epochs=finetune_epochs,
                            distill=distill, batch_size=batch_size, lr=lr, seed=seed, console=console)
        after = measure(model.eval())
        info = {"ratio": ratio, "importance": importance, "branch_ratios": dict(branch_ratios or {}),
                "finetune_epochs": finetune_epochs, "distill": distill, "structure": structure_diff(model, teacher),
                "parent": str(run.path.resolve())}
        save_checkpoint(tmp / CHECKPOINT, model, *model.build_args, pruning=info)
        _write_manifest(tmp, run, info, {"metric_name": task.metric, "before": before,
                                         "pruned_no_finetune": after_prune, "after": after, "history": history})
        load_run(tmp).record_artifact(tmp / CHECKPOINT, kind="checkpoint")
    run.update(pruned={pruned_dirname(ratio): {"before": before, "after": after}})
    return dest


def _check_options(ratio: float, finetune_epochs: int, distill: float) -> float:
    if finetune_epochs < 0:
        raise EdgeAffectError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    if not 0 <= distill < 1:
        raise EdgeAffectError(f"--distill must be in [0, 1), got {distill}")
    return check_ratio(ratio)


class _Measure:
    """Parameters, GFLOPs and the task metric on the whole val split (through ``edgeaffect.evaluate``)."""

    def __init__(self, spec, val, where: str):
        self.spec, self.val, self.where = spec, val, where

    def __call__(self, model) -> dict[str, Any]:
        from ..evaluate import predict_split, score
        from ..runtimes.registry import get_runtime, reference

        with get_runtime(reference()).load_class().from_module(model) as rt:
            (outputs,), target = predict_split(rt, self.val, self.spec, "val", self.where)
        return {**count(model, self.spec), "metric": score(self.spec, outputs, target)}


def _taylor_batches(train, batch_size: int, seed: int, n: int = 8) -> list:
    """``n`` shuffled training batches: the gradients Taylor importance accumulates."""
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    return [b for _, b in zip(range(n), loader)]


def _finetune(model, task, teacher, train, val, stage_dir: Path, *, epochs: int, distill: float, batch_size: int,
              lr: float, seed: int, console) -> list:
    """Fine-tune the pruned model (with distillation from the unpruned one when asked); the history."""
    from ..train.trainer import TrainConfig, Trainer

    if epochs == 0:
        return []
    ft_task = _Distill(task, teacher, distill, model.spec.input_names) if distill > 0 else task
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, schedule="cosine")
    trainer = Trainer(model, ft_task, train, val, cfg, stage_dir, label="fine-tune",
                      batch_transform=getattr(ft_task, "batch_transform", None), console=console)
    return trainer.fit()["history"]


def _write_manifest(folder: Path, run, info: Mapping[str, Any], numbers: Mapping[str, Any]) -> None:
    """The pruned run's manifest: the parent's (less its artifacts and results) plus a ``pruning`` section."""
    from ..runs import MANIFEST, provenance

    manifest = {k: v for k, v in run.manifest.items() if k not in ("artifacts", "quantize", "bench", "export")}
    before, after = numbers["before"], numbers["after"]
    manifest["pruning"] = {**{k: v for k, v in info.items() if k != "structure"}, **numbers,
                           "speedup_flops": round(before["gflops"] / max(after["gflops"], 1e-12), 3),
                           "provenance": provenance()}
    write_json(folder / MANIFEST, manifest)
