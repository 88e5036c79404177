"""Structured channel pruning with torch-pruning, then fine-tuning with the project's Trainer.

torch-pruning's dependency graph keeps coupled channels consistent (residual
adds, depthwise convs, BatchNorm, concatenations).  Layers whose channels are
tied to attention heads or to the model's outputs are never roots of a pruning
group, so the transformer width and the output size stay as the spec says.
Zeroed weights (unstructured sparsity) are not offered: dense kernels run them
at the same speed.  A pruned checkpoint stores the channel counts that differ
from the registered architecture, so :func:`restore_structure` can rebuild it.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import EdgeAffectError
from ..fileio import load_checkpoint

MAX_RATIO = 0.9
_STRUCT_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                 "normalized_shape", "embed_dim", "num_heads", "head_dim")


def check_ratio(ratio: float) -> float:
    if not (0 < ratio <= MAX_RATIO):
        raise EdgeAffectError(f"prune ratio {ratio:g} is outside (0, {MAX_RATIO:g}]: it is the fraction of channels removed")
    return float(ratio)


def pruned_dirname(ratio: float) -> str:
    return f"pruned-{ratio:g}"


# -- structure save / restore ------------------------------------------------------------------------
def structure_diff(pruned, reference) -> dict[str, dict[str, Any]]:
    """Per-module attributes (channel counts, groups, ...) where ``pruned`` differs from ``reference``."""
    ref = dict(reference.named_modules())
    out: dict[str, dict[str, Any]] = {}
    for name, m in pruned.named_modules():
        r = ref.get(name)
        if r is None:
            continue
        diff = {a: getattr(m, a) for a in _STRUCT_ATTRS if hasattr(m, a) and getattr(m, a) != getattr(r, a, None)}
        if diff:
            out[name] = diff
    return out


def restore_structure(model, payload: Mapping[str, Any]):
    """Reshape a freshly built registered model to a pruned checkpoint's structure (no-op if unpruned)."""
    import torch
    from torch import nn

    info = payload.get("pruning") if isinstance(payload, Mapping) else None
    if not info:
        return model
    modules = dict(model.named_modules())
    for name, attrs in info.get("structure", {}).items():
        for a, v in attrs.items():
            setattr(modules[name], a, tuple(v) if isinstance(v, list) else v)
    own = model.state_dict()
    for key, value in payload["state_dict"].items():
        if key in own and own[key].shape != value.shape:
            mod_name, _, attr = key.rpartition(".")
            mod = modules[mod_name]
            if isinstance(getattr(mod, attr), nn.Parameter):
                setattr(mod, attr, nn.Parameter(torch.empty_like(value)))
            else:
                mod._buffers[attr] = torch.empty_like(value)
    return model


def load_model_any(checkpoint: str | Path, payload: Mapping[str, Any] | None = None):
    """``runs.load_model`` that also rebuilds pruned checkpoints; eval mode."""
    import torch

    from ..models import create_model

    if payload is None:
        if not Path(checkpoint).exists():
            raise EdgeAffectError(f"no checkpoint at {checkpoint}")
        try:
            payload = load_checkpoint(checkpoint, map_location="cpu")
        except EdgeAffectError:
            raise
        except Exception as exc:
            raise EdgeAffectError(f"cannot read checkpoint {checkpoint}: {exc}") from None
    if not isinstance(payload, Mapping) or "model" not in payload or "state_dict" not in payload:
        raise EdgeAffectError(f"{checkpoint} is not an edgeaffect checkpoint")
    model = create_model(payload["model"], **payload.get("overrides", {}))
    restore_structure(model, payload)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


# -- pruning ------------------------------------------------------------------------------------------
def example_inputs(spec, batch: int = 2):
    import torch

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
    import torch_pruning as tp

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
    import torch
    import torch_pruning as tp

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
        import torch

        with torch.no_grad():
            out = self._teacher(*[batch[n] for n in self._names])
        self._teacher_out = out if isinstance(out, tuple) else (out,)
        return batch

    def loss(self, outputs, target):
        import torch.nn.functional as F

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
    import torch

    from ..fileio import atomic_dir, write_json
    from ..runs import MANIFEST, provenance
    from ..train.trainer import TrainConfig, Trainer, predict, seed_everything
    from .calibration import load_split
    from .pipeline import open_run

    ratio = check_ratio(ratio)
    if finetune_epochs < 0:
        raise EdgeAffectError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    if not 0 <= distill < 1:
        raise EdgeAffectError(f"--distill must be in [0, 1), got {distill}")
    run, model = open_run(run_dir)
    payload = load_checkpoint(run.checkpoint, map_location="cpu")
    spec = run.spec
    task, train = load_split(run, "train", data_root)
    _, val = load_split(run, "val", data_root)
    seed_everything(seed)

    def score(m):
        out, target = predict(m, val, batch_size=16)
        return float(task.metrics(out, target)[task.metric])

    before = {**count(model, spec), "metric": score(model)}
    teacher = copy.deepcopy(model).eval()

    def loss_fn(m, batch):
        out = m(*[batch[n] for n in spec.input_names])
        return task.loss(out, batch["target"])

    batches = []
    if importance == "taylor":
        loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        batches = [b for _, b in zip(range(8), loader)]
    prune_model(model, ratio, importance=importance, branch_ratios=branch_ratios, calib_batches=batches, loss_fn=loss_fn)
    after_prune = {**count(model, spec), "metric": score(model)}
    dest = run.path / pruned_dirname(ratio)
    history: list = []
    with atomic_dir(dest) as tmp:
        if finetune_epochs > 0:
            ft_task = _Distill(task, teacher, distill, spec.input_names) if distill > 0 else task
            cfg = TrainConfig(epochs=finetune_epochs, batch_size=batch_size, lr=lr, seed=seed, schedule="cosine")
            trainer = Trainer(model, ft_task, train, val, cfg, tmp / "stages" / "finetune", label="fine-tune",
                              batch_transform=getattr(ft_task, "batch_transform", None), console=console)
            history = trainer.fit()["history"]
        model.eval()
        after = {**count(model, spec), "metric": score(model)}
        structure = structure_diff(model, teacher)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        info = {"ratio": ratio, "importance": importance, "branch_ratios": dict(branch_ratios or {}),
                "finetune_epochs": finetune_epochs, "distill": distill, "structure": structure,
                "parent": str(run.path.resolve())}
        ckpt = {"model": payload["model"], "overrides": payload.get("overrides", {}), "state_dict": state,
                "spec": spec.to_dict(), "pruning": info}
        torch.save(ckpt, tmp / "checkpoint.pt")
        manifest = {k: v for k, v in run.manifest.items() if k not in ("artifacts", "quantize", "bench", "export")}
        manifest["pruning"] = {**{k: v for k, v in info.items() if k != "structure"}, "metric_name": task.metric,
                               "before": before, "pruned_no_finetune": after_prune, "after": after,
                               "speedup_flops": round(before["gflops"] / max(after["gflops"], 1e-12), 3),
                               "history": history, "provenance": provenance()}
        write_json(tmp / MANIFEST, manifest)
        import shutil

        shutil.rmtree(tmp / "stages", ignore_errors=True) if finetune_epochs == 0 else None
    run.update(pruned={pruned_dirname(ratio): {"before": before, "after": after}})
    return dest
