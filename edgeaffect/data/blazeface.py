"""BlazeFace (MediaPipe's face detector) run from the bundled ONNX files, decoded as MediaPipe decodes it.

Why BlazeFace: one small net per frame (no image pyramid, no cascade of crops as MTCNN), so a 640x480 frame
costs a few milliseconds on one thread; full range (192x192, trained for faces up to about 5 m) finds the
small faces of a group photo that short range (128x128, faces within about 2 m: webcams) misses.  Measured
in benchmarks/results/2026-12-07-detectors-amd-epyc.md.

The frame is letterboxed to the net's square input (aspect kept, black bars, as MediaPipe's
ImageToTensorCalculator with keep_aspect_ratio), the regressors are decoded against SSD anchors, and
overlapping boxes are merged by MediaPipe's weighted non-maximum suppression (score-weighted mean of every
box overlapping the best one), which steadies boxes from frame to frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgeAffectError
from ..lazy import lazy_import
from .face_nets import RUNTIME_ORDER, DetectorNet, Face, installed_runtime, net_runtime

cv2 = lazy_import("cv2", "")

WEIGHTS = Path(__file__).with_name("weights") / "blazeface"


@dataclass(frozen=True)
class Variant:
    """One BlazeFace net and its MediaPipe decoding options (face_detection_{short,full}_range.pbtxt)."""

    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_layer: int        # SSD layers of one stride merged, plus MediaPipe's interpolated-scale anchor
    min_score: float              # the graph's own score threshold before suppression


VARIANTS = {"full": Variant("full_range.onnx", 192, (4,), 1, 0.6),
            "short": Variant("short_range.onnx", 128, (8, 16, 16, 16), 2, 0.5)}


def anchors(v: Variant, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Anchor centres [A, 2] (x, y in pixels of a ``height`` x ``width`` input, default the square one) in
    the order of the net's outputs: MediaPipe's SSD anchors (fixed size; same-stride layers share a cell)."""
    height, width = height or v.size, width or v.size
    out, i, strides = [], 0, v.strides
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        rows, cols = -(-height // strides[i]), -(-width // strides[i])
        ys, xs = np.meshgrid((np.arange(rows) + 0.5) / rows * height, (np.arange(cols) + 0.5) / cols * width,
                             indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), (j - i) * v.anchors_per_layer, 0))
        i = j
    return np.concatenate(out).astype(np.float32)


def decode(reg: np.ndarray, logits: np.ndarray, anchor_xy: np.ndarray, min_score: float):
    """Boxes [K, 4] (x1, y1, x2, y2), keypoints [K, 6, 2] (pixels of the net's input) and scores [K] of the
    anchors scoring at least ``min_score`` (scores: sigmoid of logits clipped to +-100, as MediaPipe)."""
    logits = np.clip(logits.reshape(-1), -100.0, 100.0)
    keep = np.flatnonzero(logits >= np.log(min_score / (1.0 - min_score)))   # sigmoid(l) >= min_score
    scores = 1.0 / (1.0 + np.exp(-logits[keep].astype(np.float64)))
    r, a = reg[keep], anchor_xy[keep]
    centre, half = r[:, :2] + a, r[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    points = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
    return boxes, points, scores


def weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray, iou: float = 0.3):
    """MediaPipe's WEIGHTED non-maximum suppression: each kept detection is the score-weighted mean (box and
    keypoints) of all remaining boxes overlapping the best one by more than ``iou``, with the best's score."""
    order = np.argsort(-scores, kind="stable")
    boxes, points, scores = boxes[order], points[order], scores[order]
    area = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), 1)
    left, kept = np.arange(len(boxes)), []
    while left.size:
        b = boxes[left]
        wh = np.maximum(np.minimum(b[0, 2:], b[:, 2:]) - np.maximum(b[0, :2], b[:, :2]), 0)
        inter = wh[:, 0] * wh[:, 1]
        overlap = inter / np.maximum(area[left[0]] + area[left] - inter, 1e-12)
        group = left[overlap > iou] if overlap[0] > iou else left[:1]
        w = scores[group][:, None]
        kept.append(((boxes[group] * w).sum(0) / w.sum(), (points[group] * w[:, :, None]).sum(0) / w.sum(),
                     float(scores[left[0]])))
        left = left[overlap <= iou] if overlap[0] > iou else left[1:]
    return kept


# Template points 4, 5 (mouth corners) sit this far either side of the mouth centre, along the eye line,
# per unit of eye distance: (70.73 - 41.55) / 2 / (73.53 - 38.29) on the 112 px ArcFace template.
_MOUTH_HALF_WIDTH = 0.414


def five_points(keypoints: np.ndarray) -> np.ndarray:
    """:func:`~.detectors.align_face`'s five points from BlazeFace's six keypoints (the subject's right eye,
    left eye, nose tip, mouth centre, right and left ear): the eyes and nose as they are, the mouth corners
    placed on the eye line through the mouth centre, as far apart as the template puts them."""
    eye_r, eye_l, nose, mouth = keypoints[0], keypoints[1], keypoints[2], keypoints[3]
    half = _MOUTH_HALF_WIDTH * (eye_l - eye_r)
    return np.stack([eye_r, eye_l, nose, mouth - half, mouth + half]).astype(np.float32)


class BlazeFaceDetector:
    """BlazeFace ``full`` (the default detector) or ``short`` range, fp32 through :mod:`edgeaffect.runtimes`.

    ``min_score`` defaults to MediaPipe's threshold for the variant (0.6 full, 0.5 short); ``iou`` is its
    suppression threshold; ``square`` (the default) letterboxes to the full square input exactly as MediaPipe
    does (its boxes then match MediaPipe's by IoU >= 0.98 on our test images); ``square=False`` cuts the bars
    to the frame's aspect: 10-15 % faster on 4:3 frames, but the net, trained on squares, then scores the
    smallest faces lower (1 of 5 instead of 5 of 5 faces of 30 px in a 640x480 frame).
    ``long_side`` scales frames smaller than the net was trained for (192 full, 128 short): cheaper, and
    faces under a larger size are lost (measured: full range at 128 found 40-50 px faces of a 640x480
    frame that 192 finds; benchmarks/results/2026-12-07-detectors-amd-epyc.md).
    """

    def __init__(self, variant: str = "full", runtime: str | None = None, threads: int | None = 1,
                 min_score: float | None = None, iou: float = 0.3, model: Path | None = None,
                 precision: str = "fp32", square: bool = True, long_side: int | None = None):
        if variant not in VARIANTS:
            raise EdgeAffectError(f"BlazeFace comes in {' and '.join(VARIANTS)} range, not {variant!r}")
        if long_side is not None and (long_side < 64 or long_side % 32):
            raise EdgeAffectError(f"BlazeFace long_side must be a multiple of 32 from 64, got {long_side}")
        self.variant, v = variant, VARIANTS[variant]
        path = model or WEIGHTS / v.file
        runtime = net_runtime("BlazeFace", runtime,
                              None if runtime else installed_runtime([path], RUNTIME_ORDER["BlazeFace"]))
        self.net, self.runtime, self.size = DetectorNet(path, runtime, threads, precision), runtime, long_side or v.size
        self.min_score, self.iou, self.square, self._anchors = min_score or v.min_score, iou, square, {}
        self.name = "blazeface" if variant == "full" else "blazeface-short"

    def detect(self, frame_bgr: np.ndarray) -> list:
        """Faces in the frame, largest first (the :class:`~.faces.FaceDetector` interface)."""
        return [f.box for f in self.detect_faces(frame_bgr)]

    def letterbox(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """The net's input (NCHW RGB in [-1, 1]) for the frame, with the letterbox's scale and offset (x, y).

        The frame is scaled as MediaPipe scales it (long side to the net's size); without ``square`` the bars
        are cut to the next multiple of 32 (the net's deepest stride; it is convolutional, so faces keep their
        size in its input and a 4:3 frame costs 5/6 of the square's pixels, a 16:9 one 2/3)."""
        h, w = frame_bgr.shape[:2]
        img = frame_bgr if frame_bgr.ndim == 3 else cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        s = self.size / max(h, w)
        fit = (lambda n: max(32, -(-round(n * s) // 32) * 32)) if not self.square else (lambda n: self.size)
        out_w, out_h = fit(w), fit(h)
        pad = np.array([(out_w - w * s) / 2, (out_h - h * s) / 2])
        # one warp resizes and pads, with MediaPipe's mapping (its ROI corners onto the tensor's corners)
        m = np.array([[s, 0, pad[0]], [0, s, pad[1]]])
        boxed = cv2.warpAffine(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=(0, 0, 0))
        blob = cv2.dnn.blobFromImage(boxed, 1 / 127.5, None, (127.5, 127.5, 127.5), swapRB=True, crop=False)
        return blob, s, pad

    def anchors_for(self, height: int, width: int) -> np.ndarray:
        """Anchors for an input size, made once per size."""
        if (height, width) not in self._anchors:
            self._anchors[(height, width)] = anchors(VARIANTS[self.variant], height, width)
        return self._anchors[(height, width)]

    def detect_faces(self, frame_bgr: np.ndarray) -> list:
        """Faces with score and five alignment points (see :func:`five_points`), largest first."""
        blob, s, pad = self.letterbox(frame_bgr)
        reg, logits = self.net(blob)
        boxes, points, scores = decode(reg[0], logits[0], self.anchors_for(*blob.shape[2:]), self.min_score)
        faces = []
        for box, kp, score in weighted_nms(boxes, points, scores, self.iou):
            x1, y1, x2, y2 = (box - np.tile(pad, 2)) / s
            faces.append(Face((int(round(x1)), int(round(y1)), int(round(x2 - x1)), int(round(y2 - y1))), score,
                              five_points((kp - pad) / s)))
        return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)
