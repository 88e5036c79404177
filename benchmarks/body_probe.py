"""How much of the EmoReact labels a linear model reads from raw pixels, per input stream.

    python benchmarks/body_probe.py DATA [--inputs body,face] [--size 64]

Logistic regression (C 0.1, one per label) on the TSN segment frames (evaluation sampling) shrunk to
16x16, fitted on the train split and scored on val (ROC-AUC micro and per label). A floor for what a
network should reach: docs/body.md compares it with the trained streams.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def features(root: str, split: str, kind: str, size: int):
    import cv2
    import numpy as np

    from edgeaffect.data.emoreact import load_split

    ds = load_split(root, split, kind, 3, size, cache_frames=12)
    xs, ys = [], []
    for i in range(len(ds)):
        item = ds[i]
        frames = item["frames"].numpy().transpose(0, 2, 3, 1)
        xs.append(np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in frames]).ravel())
        ys.append(item["target"].numpy())
    return np.asarray(xs), np.asarray(ys)


def main() -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from edgeaffect.data.emoreact import LABELS

    from edgeaffect.errors import EdgeAffectError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python benchmarks/body_probe.py data/emoreact --inputs body,face")
    ap.add_argument("data")
    ap.add_argument("--inputs", default="body,face")
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    for kind in args.inputs.split(","):
        try:
            xtr, ytr = features(args.data, "train", kind, args.size)
            xva, yva = features(args.data, "val", kind, args.size)
        except EdgeAffectError as exc:
            sys.exit(f"error: {exc}")
        scores = np.zeros_like(yva)
        for j in range(ytr.shape[1]):
            scores[:, j] = LogisticRegression(C=0.1, max_iter=2000).fit(xtr, ytr[:, j]).decision_function(xva)
        per = {name: round(roc_auc_score(yva[:, j], scores[:, j]), 2) for j, name in enumerate(LABELS)
               if 0 < yva[:, j].sum() < len(yva)}
        print(f"{kind}: val ROC-AUC micro {roc_auc_score(yva.ravel(), scores.ravel()):.3f}  {per}")


if __name__ == "__main__":
    main()
