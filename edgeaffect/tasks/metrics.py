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


# -- per class, label or dimension (eval's breakdown; NumPy only: the edge install has no scikit-learn) -----
ABSENT = "class absent from split"


def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [true, predicted] of integer classes; targets < 0 (unannotated) are dropped."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    keep = (target >= 0) & (target < n_classes) & (pred >= 0) & (pred < n_classes)
    flat = target[keep] * n_classes + pred[keep]
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_report(logits: np.ndarray, target: np.ndarray, labels) -> dict:
    """Precision, recall, F1 and support per class, and the confusion matrix (rows true, columns predicted).

    As scikit-learn with ``zero_division=0``: a class never predicted has precision 0; a class absent from the
    split has no recall (null, with the reason beside it) and F1 0.
    """
    logits = finite(logits, "per-class scores")
    labels = list(labels) or [str(i) for i in range(logits.shape[-1])]
    conf = confusion_matrix(logits.argmax(-1), target, len(labels))
    tp, predicted, true = np.diag(conf).astype(float), conf.sum(0), conf.sum(1)
    per_class = {}
    for i, name in enumerate(labels):
        prec = tp[i] / predicted[i] if predicted[i] else 0.0
        rec = tp[i] / true[i] if true[i] else None
        f1 = 2 * tp[i] / (predicted[i] + true[i]) if predicted[i] + true[i] else 0.0
        per_class[name] = {"precision": float(prec), "recall": None if rec is None else float(rec),
                           "f1": float(f1), "support": int(true[i]), **({"recall_note": ABSENT} if rec is None else {})}
    return {"per_class": per_class,
            "confusion_matrix": {"labels": labels, "rows": conf.tolist(), "axes": "rows: true class, columns: predicted"}}


def multilabel_report(logits: np.ndarray, target: np.ndarray, labels, roc_auc, average_precision) -> dict:
    """ROC-AUC and AP per label (``roc_auc``/``average_precision``: the binary metric functions); a label with no
    positive (or no negative) sample in the split has none: null, with the reason beside it."""
    logits = finite(logits, "per-label scores")
    target = np.asarray(target)
    labels = list(labels) or [str(i) for i in range(target.shape[1])]
    per_label = {}
    for j, name in enumerate(labels):
        pos = int((target[:, j] > 0.5).sum())
        neg = len(target) - pos
        row: dict = {"roc_auc": None, "ap": None, "positives": pos}
        if pos and neg:
            row["roc_auc"] = float(roc_auc(target[:, j], logits[:, j]))
        else:
            row["roc_auc_note"] = ABSENT if not pos else "no negative sample in split"
        if pos:
            row["ap"] = float(average_precision(target[:, j], logits[:, j]))
        else:
            row["ap_note"] = ABSENT
        per_label[name] = row
    return {"per_class": per_label}


def regression_report(columns: dict, target_columns: dict, metric: str, fn) -> dict:
    """``metric`` (``fn(pred, target) -> float``) per named dimension: CCC per VA dimension, Pearson per intensity."""
    return {"per_class": {name: {metric: float(fn(columns[name], target_columns[name]))} for name in columns}}
