"""Face detection and cropping behind a small interface.

``FaceDetector.detect(frame_bgr) -> list[Box]`` is all a detector must do, so
a better detector (a DNN, MediaPipe, a dataset's own boxes) plugs in without
touching readers or the demo.  :mod:`.detectors` picks one by name: BlazeFace
(bundled ONNX, the default where ONNX Runtime or OpenVINO is installed), MTCNN,
or OpenCV's Haar frontal-face cascade (inside ``opencv-python-headless`` 4.x),
the fallback.  A detector's ``name`` goes into preprocessing cache keys.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..errors import EdgeAffectError
from ..lazy import lazy_import

cv2 = lazy_import("cv2", "")

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


class FaceDetector(Protocol):
    def detect(self, frame_bgr: np.ndarray) -> list[Box]:
        """Faces in the frame, largest first."""
        ...


class HaarFaceDetector:
    """OpenCV Haar cascade on a downscaled grey frame (fast enough for every Nth frame on a 2-core CPU)."""

    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 32, max_side: int = 480):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise EdgeAffectError(f"OpenCV's Haar cascade is missing ({path}); install opencv-python-headless<5")
        self.scale_factor, self.min_neighbors, self.min_size, self.max_side = scale_factor, min_neighbors, min_size, max_side

    def detect(self, frame_bgr: np.ndarray) -> list[Box]:
        h, w = frame_bgr.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
        if s < 1.0:
            grey = cv2.resize(grey, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        min_size = max(12, int(self.min_size * s))
        found = self._cascade.detectMultiScale(grey, self.scale_factor, self.min_neighbors, minSize=(min_size, min_size))
        boxes = [tuple(int(round(v / s)) for v in b) for b in (found if len(found) else [])]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def square_box(box: Box, margin: float, frame_shape: Sequence[int]) -> Box:
    """Expand a box by ``margin`` (fraction of its size) to a square, clipped to the frame."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    H, W = frame_shape[:2]
    side = min(side, H, W)
    x0 = int(round(min(max(cx - side / 2, 0), W - side)))
    y0 = int(round(min(max(cy - side / 2, 0), H - side)))
    return x0, y0, side, side


def crop_face(frame_bgr: np.ndarray, box: Box, size: int, margin: float = 0.2) -> np.ndarray:
    """Square crop around ``box`` resized to ``size`` x ``size`` (BGR uint8)."""
    x, y, w, h = square_box(box, margin, frame_bgr.shape)
    crop = frame_bgr[y:y + h, x:x + w]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_LINEAR)


def face_crops(frames: np.ndarray, detector: FaceDetector, size: int, margin: float = 0.2) -> tuple[np.ndarray, int]:
    """Crop the largest face in each frame; frames without a detection reuse the nearest earlier box
    (or the first later one).  Returns (crops [N, S, S, 3] BGR uint8, number of frames with a detection).
    When no frame has a face, returns (empty array, 0) and the caller decides.
    """
    found = [detector.detect(f) for f in frames]
    boxes = fill_boxes([d[0] if d else None for d in found])
    if boxes is None:
        return np.zeros((0, size, size, 3), np.uint8), 0
    crops = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (f, b) in enumerate(zip(frames, boxes)):
        crops[i] = crop_face(f, b, size, margin)
    return crops, sum(bool(d) for d in found)


def fill_boxes(boxes: Sequence[Box | None]) -> list[Box] | None:
    """Replace missing boxes by the nearest earlier detection (the first later one at the start)."""
    found = [b for b in boxes if b is not None]
    if not found:
        return None
    prev, out = found[0], []
    for b in boxes:
        prev = b if b is not None else prev
        out.append(prev)
    return out


def consistent_faces(detections: Sequence[Sequence[Box]]) -> list[Box | None]:
    """Per frame, the detection that agrees with the clip's face, or None.

    The median of the frames' largest detections says where the face is and how large; a frame keeps
    its detection nearest to that centre if it lies within one median face width of it and is half to
    twice its width. A larger false detection (a shirt pattern, a poster) no longer wins by size.
    """
    largest = [d[0] for d in detections if len(d)]
    if not largest:
        return [None] * len(detections)
    x, y, w, h = np.median(np.asarray(largest, np.float64), axis=0)
    cx, cy = x + w / 2, y + h / 2

    def offset(b):
        return float(np.hypot(b[0] + b[2] / 2 - cx, b[1] + b[3] / 2 - cy))

    out = []
    for found in detections:
        ok = [b for b in found if offset(b) <= w and 0.5 <= b[2] / w <= 2.0]
        out.append(min(ok, key=offset) if ok else None)
    return out
