"""Drawing predictions on the frame: boxes with track id and label, per-emotion bars, FPS and latency."""
from __future__ import annotations

from typing import Sequence

import numpy as np

_COLORS = [(80, 200, 80), (60, 160, 255), (255, 140, 60), (200, 80, 200), (60, 220, 220), (220, 220, 60)]


def draw(frame: np.ndarray, faces: Sequence[dict], labels: Sequence[str], fps: float, latency_ms: float,
         status: str = "") -> np.ndarray:
    """Annotate ``frame`` in place. ``faces``: dicts with track, box, and optional scores (label -> score)."""
    import cv2

    h, w = frame.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    for face in faces:
        x, y, bw, bh = face["box"]
        color = _COLORS[face["track"] % len(_COLORS)]
        cv2.rectangle(frame, (x, y), (x + bw, y + bh), color, 2)
        scores = face.get("scores") or {}
        title = f"#{face['track']}"
        if scores:
            top = max(scores, key=scores.get)
            title += f" {top} {scores[top]:.2f}"
        cv2.putText(frame, title, (x, max(12, y - 6)), font, 0.5, color, 1, cv2.LINE_AA)
        if scores:
            _bars(frame, scores, labels, x + bw + 4 if x + bw + 110 < w else max(0, x - 110), y, color)
    text = f"FPS {fps:5.1f}  latency {latency_ms:5.1f} ms"
    cv2.rectangle(frame, (0, 0), (min(w, 260), 20), (0, 0, 0), -1)
    cv2.putText(frame, text, (4, 14), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    if status:
        cv2.rectangle(frame, (0, h - 22), (w, h), (0, 0, 160), -1)
        cv2.putText(frame, status[:100], (4, h - 7), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def _bars(frame, scores: dict, labels: Sequence[str], x: int, y: int, color) -> None:
    import cv2

    for i, name in enumerate(labels):
        v = float(scores.get(name, 0.0))
        yy = y + i * 12
        if yy + 10 > frame.shape[0]:
            break
        cv2.rectangle(frame, (x, yy), (x + 100, yy + 10), (40, 40, 40), -1)
        cv2.rectangle(frame, (x, yy), (x + int(100 * min(max(v, 0.0), 1.0)), yy + 10), color, -1)
        cv2.putText(frame, name[:10], (x + 2, yy + 9), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
