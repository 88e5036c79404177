"""Task metrics on NumPy arrays (the same functions score torch and every runtime)."""
from __future__ import annotations

import numpy as np

from ..errors import EdgeAffectError


def finite(values, metric: str) -> np.ndarray:
    """``values`` as float64, or one clear error if any is NaN/inf.

    A diverged or badly quantized model emits NaN; scored anyway it would give a
    NaN metric or, in a ranking metric, silently count as the highest score.
    """
    a = np.asarray(values, np.float64)
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise EdgeAffectError(f"{metric}: {bad} of {a.size} predicted values are not finite (NaN or inf); "
                              "the model's outputs cannot be scored")
    return a


def pearson_per_column(pred: np.ndarray, target: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Pearson r per column, as in the ABAW ERI challenge.

    ``sum((p-p̄)(y-ȳ)) / max(sqrt(sum((p-p̄)²) sum((y-ȳ)²)), eps)``: a constant
    prediction (or constant target) column scores 0 instead of NaN.
    """
    p = finite(pred, "Pearson r").reshape(len(pred), -1)
    y = np.asarray(target, np.float64).reshape(len(target), -1)
    pc = p - p.mean(0)
    yc = y - y.mean(0)
    num = (pc * yc).sum(0)
    den = np.maximum(np.sqrt((pc ** 2).sum(0) * (yc ** 2).sum(0)), eps)
    return num / den


def mean_pearson(pred: np.ndarray, target: np.ndarray) -> float:
    return float(pearson_per_column(pred, target).mean())


def ccc(pred: np.ndarray, target: np.ndarray) -> float:
    """Concordance correlation coefficient over all values (flattened)."""
    p = finite(pred, "CCC").ravel()
    y = np.asarray(target, np.float64).ravel()
    mp, my = p.mean(), y.mean()
    vp, vy = p.var(), y.var()
    cov = ((p - mp) * (y - my)).mean()
    return float(2 * cov / (vp + vy + (mp - my) ** 2 + 1e-12))


def accuracy(logits: np.ndarray, target: np.ndarray) -> float:
    return float((finite(logits, "accuracy").argmax(-1) == np.asarray(target).ravel()).mean())
