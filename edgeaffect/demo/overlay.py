"""Drawing predictions on the frame, in the form each output kind reads best (``feeds.output_kind``).

- ``classes`` (softmax) and ``intensities`` (values in [0, 1]): one bar per label, the top one in the title;
- ``multilabel`` (sigmoid labels): chips, filled for the labels above 0.5;
- ``circumplex`` (valence, arousal in [-1, 1]): a point on the valence (x) / arousal (y) plane.

Plus each track's box and id (and its body box for body models), FPS and latency, and a status line.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..lazy import lazy_import

cv2 = lazy_import("cv2", "")

_COLORS = [(80, 200, 80), (60, 160, 255), (255, 140, 60), (200, 80, 200), (60, 220, 220), (220, 220, 60)]
_PANEL = 110   # width of the per-track panel beside the box


def draw(frame: np.ndarray, faces: Sequence[dict], labels: Sequence[str], fps: float, latency_ms: float,
         status: str = "", kind: str = "classes") -> np.ndarray:
    """Annotate ``frame`` in place. ``faces``: dicts with track, box, optional body_box and scores (label -> score)."""
    h, w = frame.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    for face in faces:
        x, y, bw, bh = face["box"]
        color = _COLORS[face["track"] % len(_COLORS)]
        cv2.rectangle(frame, (x, y), (x + bw, y + bh), color, 2)
        if face.get("body_box"):
            bx, by, bbw, bbh = face["body_box"]
            cv2.rectangle(frame, (bx, by), (bx + bbw - 1, by + bbh - 1), color, 1)
        scores = face.get("scores") or {}
        cv2.putText(frame, _title(face, scores, kind), (x, max(12, y - 6)), font, 0.5, color, 1, cv2.LINE_AA)
        if scores:
            px = x + bw + 4 if x + bw + _PANEL < w else max(0, x - _PANEL)
            _PANELS.get(kind, _bars)(frame, scores, labels, px, y, color)
    text = f"FPS {fps:5.1f}  latency {latency_ms:5.1f} ms"
    cv2.rectangle(frame, (0, 0), (min(w, 260), 20), (0, 0, 0), -1)
    cv2.putText(frame, text, (4, 14), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    if status:
        cv2.rectangle(frame, (0, h - 22), (w, h), (0, 0, 160), -1)
        cv2.putText(frame, status[:100], (4, h - 7), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def _title(face: dict, scores: dict, kind: str) -> str:
    title = f"#{face['track']}"
    if not scores:
        return title
    if kind == "circumplex":
        return title + f" V {scores.get('valence', 0.0):+.2f} A {scores.get('arousal', 0.0):+.2f}"
    if kind == "multilabel":
        on = face.get("labels") or []
        return title + (f" {', '.join(on[:2])}" if on else " -")
    top = max(scores, key=scores.get)
    return title + f" {top} {scores[top]:.2f}"


def _bars(frame, scores: dict, labels: Sequence[str], x: int, y: int, color) -> None:
    for i, name in enumerate(labels):
        v = float(scores.get(name, 0.0))
        yy = y + i * 12
        if yy + 10 > frame.shape[0]:
            break
        cv2.rectangle(frame, (x, yy), (x + 100, yy + 10), (40, 40, 40), -1)
        cv2.rectangle(frame, (x, yy), (x + int(100 * min(max(v, 0.0), 1.0)), yy + 10), color, -1)
        cv2.putText(frame, name[:10], (x + 2, yy + 9), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1, cv2.LINE_AA)


def _chips(frame, scores: dict, labels: Sequence[str], x: int, y: int, color) -> None:
    """One chip per label: filled in the track's colour when above 0.5, outlined otherwise."""
    for i, name in enumerate(labels):
        yy = y + i * 14
        if yy + 12 > frame.shape[0]:
            break
        on = float(scores.get(name, 0.0)) > 0.5
        cv2.rectangle(frame, (x, yy), (x + 100, yy + 12), color if on else (90, 90, 90), -1 if on else 1)
        cv2.putText(frame, f"{name[:11]} {scores.get(name, 0.0):.2f}", (x + 3, yy + 10), cv2.FONT_HERSHEY_PLAIN,
                    0.7, (0, 0, 0) if on else (220, 220, 220), 1, cv2.LINE_AA)


def _circumplex(frame, scores: dict, labels: Sequence[str], x: int, y: int, color) -> None:
    """Valence (left unpleasant, right pleasant) by arousal (down calm, up active), both in [-1, 1]."""
    s = 100
    if y + s > frame.shape[0] or x + s > frame.shape[1]:
        return
    cv2.rectangle(frame, (x, y), (x + s, y + s), (40, 40, 40), -1)
    c = s // 2
    cv2.line(frame, (x, y + c), (x + s, y + c), (140, 140, 140), 1)
    cv2.line(frame, (x + c, y), (x + c, y + s), (140, 140, 140), 1)
    cv2.circle(frame, (x + c, y + c), c - 2, (110, 110, 110), 1)
    v = float(np.clip(scores.get("valence", 0.0), -1, 1))
    a = float(np.clip(scores.get("arousal", 0.0), -1, 1))
    cv2.circle(frame, (x + c + int(round(v * (c - 4))), y + c - int(round(a * (c - 4)))), 5, color, -1)
    for text, (tx, ty) in (("V", (x + s - 9, y + c - 3)), ("A", (x + c + 3, y + 10))):
        cv2.putText(frame, text, (tx, ty), cv2.FONT_HERSHEY_PLAIN, 0.8, (220, 220, 220), 1, cv2.LINE_AA)


_PANELS = {"classes": _bars, "intensities": _bars, "multilabel": _chips, "circumplex": _circumplex}
