"""A light IoU tracker: stable ids across detections, constant-velocity boxes between them.

Detection runs every N frames; in between, each track's box moves by its
last measured velocity, which costs microseconds instead of a detector pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: np.ndarray                     # float x, y, w, h at the current frame
    det_box: np.ndarray                 # the last detected box ...
    det_frame: int                      # ... and its frame
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # per frame
    missed: int = 0
    hits: int = 1
    seen: int = 0                       # the last frame a detection matched it

    @property
    def int_box(self) -> Box:
        x, y, w, h = self.box.tolist()   # Python floats: round() is 10x cheaper than on numpy scalars
        return round(x), round(y), round(w), round(h)


class IoUTracker:
    """Greedy IoU matching of detections to tracks (highest IoU first).

    A track survives ``max_missed`` detection rounds without a match, and at least ``keep_frames`` frames
    (with detection on every frame, two rounds are two frames: a blink of the detector must not renumber a
    face); new detections start new ids; at most ``max_tracks`` are kept (largest first).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2, max_tracks: int = 4, keep_frames: int = 0):
        self.iou_threshold, self.max_missed, self.max_tracks = iou_threshold, max_missed, max_tracks
        self.keep_frames = keep_frames
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box], frame: int) -> list[Track]:
        """Match a new set of detections (a detection frame)."""
        self.predict(frame)
        pairs = sorted(((iou(t.int_box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        used_t, used_b = set(), set()
        for score, ti, bi in pairs:
            if score < self.iou_threshold or ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            t = self.tracks[ti]
            new = np.asarray(boxes[bi], float)
            gap = max(1, frame - t.det_frame)
            t.velocity = 0.5 * t.velocity + 0.5 * (new - t.det_box) / gap
            t.box, t.det_box, t.det_frame, t.missed, t.hits, t.seen = new, new, frame, 0, t.hits + 1, frame
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1
                t.velocity = np.zeros(4)
                t.det_box, t.det_frame = t.box.copy(), frame
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed or frame - t.seen <= self.keep_frames]
        for bi, b in enumerate(boxes):
            if bi not in used_b:
                box = np.asarray(b, float)
                self.tracks.append(Track(self._next_id, box, box.copy(), frame, seen=frame))
                self._next_id += 1
        self.tracks.sort(key=lambda t: (t.missed, -t.box[2] * t.box[3]))
        del self.tracks[self.max_tracks:]
        return self.tracks

    def predict(self, frame: int) -> list[Track]:
        """Move every track by its velocity to ``frame`` (a frame without detection)."""
        for t in self.tracks:
            t.box = t.det_box + t.velocity * max(0, frame - t.det_frame)
        return self.tracks
