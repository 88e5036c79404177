r"""Semi-supervised training (FixMatch-style) with a fixed or a dynamic per-class confidence threshold.

Each training step sees ``B`` labeled faces and ``mu * B`` unlabeled ones:

    L = CE(f(weak(x_l)), y_l)
        + lambda_u * (1 / mu B) * sum_u 1[max p_u >= tau_{yhat_u}(t)] * CE(f(strong(u)), yhat_u)

where ``p_u = softmax(f(weak(u)))`` (no gradient) and ``yhat_u = argmax p_u``.
The labeled, weak and strong views go through the network as one batch, so
batch-norm statistics cover all of them (as in FixMatch).

Thresholds
----------
``fixed``:  tau_c(t) = tau for every class and step (FixMatch; default tau = 0.95).

``dtm`` (dynamic threshold module; our formulas — the seed's code is not public):
per-class thresholds set so that each class receives pseudo-labels in
proportion to its frequency, the most confident first, with a share that grows
with the training stage:

- memory: for every unlabeled sample u seen so far, its latest weak-view
  prediction ``yhat_u`` and confidence ``c_u = max p_u`` (updated each time u is drawn);
- class prior: pi_c = (n_c + 1) / (N + C) from the labeled subset (n_c labeled faces of class c);
- stage rate:  rho(t) = the value of the last stage whose start <= t / T
  (default stages 0 -> 0, 1/3 -> 0.25, 2/3 -> 0.5: no pseudo-labels below the ceiling in the first third);
- quota:       q_c(t) = floor(rho(t) * pi_c * n_seen)
- learning status of class c: the confidences {c_u : yhat_u = c} in the memory;
- threshold:   tau_c(t) = clip(the q_c-th largest of them, tau_lo, tau_hi),
  and tau_hi when q_c < 1 or class c is never predicted (tau_lo = 0.5, tau_hi = 0.99).

A well-learnt class (many confident predictions) gets a high threshold; a
class still being learnt (rare or hard: Fear, Disgust) gets a lower one, so it
receives its share of pseudo-labels at all, which is what a macro F1 rewards;
a class the model over-predicts cannot crowd the others out, since its quota is
bounded by its prior.  Two earlier formulations were measured and replaced
(docs/expr.md): FlexMatch's tau_c = max(tau_min, tau_max * beta_c / (2 - beta_c))
with the warm-up normaliser, which sat at its floor while the model was weak,
and a narrow band tau_max(t) * (1 - delta * (1 - M(beta_c))) below stage
ceilings, which lowered the thresholds of the frequent but confusable classes
(Neutral, Sadness) as much as the rare ones and admitted more noise than a
fixed 0.95.

Augmentations are written with torch tensor ops on [N, 3, H, W] batches in
[0, 1] with per-sample random parameters drawn from the epoch's generator
(deterministic, resumable):

- weak: horizontal flip (p = 0.5) and translation up to 12.5 % (reflect padding);
- strong: weak + ``n_ops`` random ops of RandAugment's list at random magnitude
  (brightness, contrast, saturation, sharpness, posterize, solarize,
  autocontrast, rotate +-30 deg, shear +-0.3, translate +-30 %), optionally
  + Cutout (a grey square of e.g. 25-50 % of the side).  The training default is
  one op and no Cutout: an expression lives in a few small parts of the face,
  and FixMatch's 2 ops + Cutout often removed the mouth or the brows, so the
  consistency loss taught the model to guess (measured in docs/expr.md).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..tasks import Task
from .trainer import Trainer
from ..fileio import load_checkpoint

# -- augmentations ----------------------------------------------------------------------------------


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _geometry(n: int, gen: torch.Generator, translate: float, flip: bool = True) -> torch.Tensor:
    """Per-sample affine matrices [n, 2, 3]: optional flip, translation (fraction of the side)."""
    theta = torch.zeros(n, 2, 3)
    sx = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = _u(2 * n, -2 * translate, 2 * translate, gen).reshape(n, 2)  # grid units span 2
    return theta


def weak_augment(x: torch.Tensor, gen: torch.Generator, translate: float = 0.125) -> torch.Tensor:
    """Flip + small shift: the view used for labeled faces and for pseudo-labelling."""
    return _affine(x, _geometry(len(x), gen, translate))


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``b + factor * (a - b)`` per sample (factor 1 = unchanged, 0 = ``b``), clipped: PIL ImageEnhance semantics."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp(0, 1)


def _color_ops(x: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
    n = len(x)
    g = _gray(x)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    lo = x.amin((1, 2, 3), keepdim=True)
    hi = x.amax((1, 2, 3), keepdim=True)
    bits = torch.randint(4, 9, (n,), generator=gen).view(-1, 1, 1, 1).to(x.dtype)
    levels = 2.0 ** bits
    thresh = _u(n, 0.5, 1.0, gen).view(-1, 1, 1, 1)
    return [
        _blend(x, torch.zeros_like(x), _u(n, 0.1, 1.9, gen)),                      # brightness
        _blend(x, g.mean((1, 2, 3), keepdim=True).expand_as(x), _u(n, 0.1, 1.9, gen)),  # contrast
        _blend(x, g.expand_as(x), _u(n, 0.1, 1.9, gen)),                           # saturation
        _blend(x, blurred, _u(n, 0.1, 1.9, gen)),                                  # sharpness
        torch.floor(x * (levels - 1) + 0.5) / (levels - 1),                        # posterize 4-8 bits
        torch.where(x >= thresh, 1.0 - x, x),                                      # solarize
        ((x - lo) / (hi - lo).clamp_min(1e-3)).clamp(0, 1),                        # autocontrast
    ]


def strong_augment(x: torch.Tensor, gen: torch.Generator, n_ops: int = 2,
                   cutout: tuple[float, float] | None = (0.25, 0.5)) -> torch.Tensor:
    """RandAugment-style colour/geometry ops (+ Cutout unless ``cutout`` is None) on top of the weak view."""
    n, _, h, w = x.shape
    n_color, n_geo = 7, 3
    choice = torch.stack([torch.randperm(n_color + n_geo, generator=gen)[:n_ops] for _ in range(n)])  # [n, n_ops]
    picked = torch.zeros(n, n_color + n_geo, dtype=torch.bool)
    picked[torch.arange(n).unsqueeze(1), choice] = True
    # geometry (weak flip/shift + selected rotate / shear / translate) in one resampling
    theta = _geometry(n, gen, 0.125)
    ang = torch.where(picked[:, n_color], _u(n, -30, 30, gen), torch.zeros(n)) * math.pi / 180
    shear = torch.where(picked[:, n_color + 1], _u(n, -0.3, 0.3, gen), torch.zeros(n))
    shift = torch.where(picked[:, n_color + 2:n_color + 3], _u(2 * n, -0.6, 0.6, gen).reshape(n, 2), torch.zeros(n, 2))
    rot = torch.stack([torch.stack([torch.cos(ang), -torch.sin(ang) + shear], 1),
                       torch.stack([torch.sin(ang), torch.cos(ang)], 1)], 1)  # [n, 2, 2]
    theta[:, :, :2] = rot @ theta[:, :, :2]
    theta[:, :, 2] = theta[:, :, 2] + shift
    out = _affine(x, theta)
    for k, variant in enumerate(_color_ops(out, gen)):
        out = torch.where(picked[:, k].view(-1, 1, 1, 1), variant, out)
    if cutout is None:
        return out
    # Cutout: one grey square per sample
    side = (_u(n, *cutout, gen) * min(h, w)).round().long()
    cy, cx = torch.randint(0, h, (n,), generator=gen), torch.randint(0, w, (n,), generator=gen)
    yy = torch.arange(h).view(1, h, 1)
    xx = torch.arange(w).view(1, 1, w)
    half = (side // 2).view(-1, 1, 1)
    box = ((yy - cy.view(-1, 1, 1)).abs() <= half) & ((xx - cx.view(-1, 1, 1)).abs() <= half)
    return torch.where(box.unsqueeze(1), torch.full_like(out, 0.5), out)


# -- thresholds -------------------------------------------------------------------------------------


class FixedThreshold:
    """FixMatch: the same confidence threshold for every class at every step."""

    kind = "fixed"

    def __init__(self, n_classes: int, tau: float = 0.95):
        self.n_classes = n_classes
        self.tau = float(tau)

    def thresholds(self, progress: float) -> torch.Tensor:
        return torch.full((self.n_classes,), self.tau)

    def update(self, conf: torch.Tensor, pred: torch.Tensor, index: torch.Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tau = float(state["tau"])


DEFAULT_RATES = ((0.0, 0.0), (1 / 3, 0.25), (2 / 3, 0.5))


def class_prior(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Laplace-smoothed class frequencies of the labeled faces: (n_c + 1) / (N + C)."""
    n = np.bincount(np.asarray(labels, np.int64)[np.asarray(labels) >= 0], minlength=n_classes)[:n_classes]
    return torch.tensor((n + 1) / (n.sum() + n_classes), dtype=torch.float32)


class DynamicThreshold:
    """DTM: per-class thresholds from class-balanced quotas of the most confident predictions (formulas above)."""

    kind = "dtm"

    def __init__(self, n_classes: int, n_unlabeled: int, prior: torch.Tensor | None = None,
                 rates: Sequence[tuple[float, float]] = DEFAULT_RATES, tau_lo: float = 0.5, tau_hi: float = 0.99):
        if n_unlabeled < 1:
            raise ValueError("DTM needs at least one unlabeled sample")
        if not 0.0 <= tau_lo <= tau_hi <= 1.0:
            raise ValueError("DTM needs 0 <= tau_lo <= tau_hi <= 1")
        if any(not 0.0 <= r <= 1.0 for _, r in rates):
            raise ValueError("DTM stage rates must lie in [0, 1]")
        self.n_classes = n_classes
        self.prior = torch.full((n_classes,), 1.0 / n_classes) if prior is None else torch.as_tensor(prior, dtype=torch.float32)
        if self.prior.shape != (n_classes,):
            raise ValueError(f"DTM prior must have {n_classes} entries")
        self.rates = tuple((float(s), float(r)) for s, r in sorted(rates))
        self.tau_lo, self.tau_hi = float(tau_lo), float(tau_hi)
        self.pred = torch.full((n_unlabeled,), -1, dtype=torch.long)    # latest prediction, -1 = not seen yet
        self.conf = torch.zeros(n_unlabeled)                               # its confidence

    def rate(self, progress: float) -> float:
        rho = self.rates[0][1]
        for start, value in self.rates:
            if progress >= start:
                rho = value
        return rho

    def quotas(self, progress: float) -> torch.Tensor:
        """q_c = floor(rho(t) * pi_c * n_seen): how many pseudo-labels class c may receive now."""
        n_seen = int((self.pred >= 0).sum())
        return torch.floor(self.rate(progress) * self.prior * n_seen + 1e-6).long()

    def thresholds(self, progress: float) -> torch.Tensor:
        out = torch.full((self.n_classes,), self.tau_hi)
        for c, q in enumerate(self.quotas(progress).tolist()):
            confs = self.conf[self.pred == c]
            if q >= 1 and len(confs):
                out[c] = torch.topk(confs, min(q, len(confs))).values[-1]
        return out.clamp(self.tau_lo, self.tau_hi)

    def update(self, conf: torch.Tensor, pred: torch.Tensor, index: torch.Tensor) -> None:
        index = index.cpu()
        self.pred[index] = pred.cpu()
        self.conf[index] = conf.detach().float().cpu()

    def state_dict(self) -> dict[str, Any]:
        return {"pred": self.pred.clone(), "conf": self.conf.clone(), "prior": self.prior.clone(),
                "rates": self.rates, "tau_lo": self.tau_lo, "tau_hi": self.tau_hi}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "pred" not in state:
            raise ValueError("DTM state was saved by an earlier DTM formulation; start a new run")
        if len(state["pred"]) != len(self.pred):
            raise ValueError("DTM state was saved for a different unlabeled set")
        self.pred, self.conf, self.prior = state["pred"].clone(), state["conf"].clone(), state["prior"].clone()
        self.rates = tuple(tuple(r) for r in state["rates"])
        self.tau_lo, self.tau_hi = float(state["tau_lo"]), float(state["tau_hi"])


# -- batches, objective, trainer --------------------------------------------------------------------

ROLE_LABELED, ROLE_WEAK, ROLE_STRONG = 0, 1, 2


class Repeat:
    """A dataset seen ``length`` times per epoch in total (few labels still give a full epoch of steps)."""

    def __init__(self, dataset, length: int):
        self.dataset = dataset
        self.length = max(int(length), len(dataset))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        return self.dataset[int(i) % len(self.dataset)]


class SupervisedBatches:
    """``batch_transform`` for supervised-only training: the weak view of each labeled face."""

    def __call__(self, batch: dict, gen: torch.Generator) -> dict:
        return {**batch, "face": weak_augment(batch["face"], gen)}


class SemiSupervisedBatches:
    """``batch_transform`` that appends ``mu * B`` unlabeled faces (weak and strong views) to each labeled batch.

    The target becomes int64 [N, 4]: (label or -1, role, unlabeled index or -1,
    hidden true label or -1).  The hidden label (known only when unlabeled
    samples are labeled frames with their labels withheld) feeds diagnostics,
    never the loss.
    """

    def __init__(self, unlabeled, mu: int = 3, strong_ops: int = 1, cutout: tuple[float, float] | None = None):
        self.unlabeled = unlabeled
        self.mu = int(mu)
        self.strong_ops = int(strong_ops)
        self.cutout = cutout

    def __call__(self, batch: dict, gen: torch.Generator) -> dict:
        b = len(batch["target"])
        idx = torch.randint(len(self.unlabeled), (self.mu * b,), generator=gen)
        items = [self.unlabeled[int(i)] for i in idx]
        u = torch.from_numpy(np.stack([it["face"] for it in items]))
        uidx = torch.tensor([int(it["index"]) for it in items])
        hidden = torch.tensor([int(it["target"]) for it in items])
        face = torch.cat([weak_augment(batch["face"], gen), weak_augment(u, gen),
                          strong_augment(u, gen, self.strong_ops, self.cutout)])
        n_u = len(u)
        neg = torch.full((b,), -1)
        target = torch.cat([
            torch.stack([batch["target"].long(), torch.full((b,), ROLE_LABELED), neg, neg], 1),
            torch.stack([torch.full((n_u,), -1), torch.full((n_u,), ROLE_WEAK), uidx, hidden], 1),
            torch.stack([torch.full((n_u,), -1), torch.full((n_u,), ROLE_STRONG), uidx, hidden], 1),
        ])
        return {"face": face, "target": target}


class SemiSupervisedTask(Task):
    """The base task's metrics with the FixMatch loss; the threshold policy is pluggable (fixed / DTM)."""

    def __init__(self, base: Task, threshold: FixedThreshold | DynamicThreshold, total_steps: int, lambda_u: float = 1.0):
        self.base = base
        self.threshold = threshold
        self.total_steps = max(int(total_steps), 1)
        self.lambda_u = float(lambda_u)
        self.name, self.metric = base.name, base.metric
        self.higher_is_better, self.metric_scale = base.higher_is_better, base.metric_scale
        self.step = 0
        self._stats = np.zeros(4)   # unlabeled seen, accepted, accepted with a known hidden label, of those correct

    def dataset(self, root: Path, split: str, spec, **kw):
        return self.base.dataset(root, split, spec, **kw)

    def metrics(self, outputs, target):
        return self.base.metrics(outputs, target)

    def stratify_key(self, target):
        return self.base.stratify_key(target)

    def loss(self, outputs, target):
        role = target[:, 1]
        lab, weak, strong = role == ROLE_LABELED, role == ROLE_WEAK, role == ROLE_STRONG
        sup = self.base.loss(outputs[lab], target[lab, 0])
        with torch.no_grad():
            probs = outputs[weak].detach().float().softmax(-1)
            conf, pseudo = probs.max(-1)
            tau = self.threshold.thresholds(self.step / self.total_steps).to(conf.device)
            mask = (conf >= tau[pseudo]).float()
            self.threshold.update(conf, pseudo, target[weak, 2])
            hidden = target[weak, 3]
            known = (mask > 0) & (hidden >= 0)
            self._stats += [len(mask), float(mask.sum()), float(known.sum()), float((pseudo[known] == hidden[known]).sum())]
        unsup = (F.cross_entropy(outputs[strong], pseudo, reduction="none") * mask).mean()
        self.step += 1
        return sup + self.lambda_u * unsup

    def epoch_stats(self) -> dict[str, Any]:
        """Pseudo-label statistics since the last call (mask rate, precision where the truth is known)."""
        seen, acc, known, right = self._stats
        self._stats = np.zeros(4)
        out = {"mask_rate": acc / seen if seen else 0.0,
               "thresholds": [round(float(t), 4) for t in self.threshold.thresholds(self.step / self.total_steps)]}
        if known:
            out["pseudo_precision"] = right / known
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "threshold": self.threshold.state_dict(), "stats": self._stats.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.threshold.load_state_dict(state["threshold"])
        self._stats = np.asarray(state["stats"], np.float64)


class SemiSupervisedTrainer(Trainer):
    """The shared :class:`Trainer` loop with the SSL objective; its state rides in ``last.pt`` for ``--resume``.

    Each epoch's pseudo-label statistics are added to that epoch's history record.
    """

    def __init__(self, model, task: SemiSupervisedTask, train_set, val_set, config, stage_dir, **kw):
        super().__init__(model, task, train_set, val_set, config, stage_dir, **kw)
        self.ssl = task

    def fit(self, resume: bool = False) -> dict[str, Any]:
        last = self.stage_dir / "last.pt"
        if resume and last.exists():
            state = load_checkpoint(last, map_location="cpu")
            if "ssl" in state:
                self.ssl.load_state_dict(state["ssl"])
        return super().fit(resume=resume)

    def _save(self, path: Path, obj: dict) -> None:
        if Path(path).name == "last.pt":
            stats = self.ssl.epoch_stats()
            if self.history:
                self.history[-1].update({f"ssl_{k}": v for k, v in stats.items()})
            obj = {**obj, "history": self.history, "ssl": self.ssl.state_dict()}
        super()._save(path, obj)
