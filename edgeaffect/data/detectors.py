"""Face detectors by name: BlazeFace (the default), MTCNN, OpenCV Haar, run by ONNX Runtime or OpenVINO.

``auto`` and ``blazeface`` are BlazeFace full range, ``blazeface-short`` its short-range net for webcams
(faces within about 2 m), both converted from MediaPipe's ``.tflite`` (Apache-2.0; see
:mod:`.blazeface_export`, decoded in :mod:`.blazeface`).  MTCNN's P/R/O-Nets (weights from the
``facenet-pytorch`` wheel, MIT; see :mod:`.mtcnn_export`) stay selectable.  All ship as ONNX inside this
package, so no torch and no download is needed; they run through :mod:`edgeaffect.runtimes` pinned to
fp32.  With neither runtime installed, ``auto`` falls back to Haar and says so in one line.
Every detector but Haar gives five landmarks per face (eyes, nose, mouth corners), which
:func:`align_face` uses to crop faces the way Aff-Wild2's ``cropped_aligned`` frames are made.

Why BlazeFace full range over MTCNN: one 192x192 net per frame instead of an image pyramid and two crop
stages, so it costs a fraction of MTCNN's time on one thread and still finds all five faces of the group
photo (benchmarks/results/2026-12-07-detectors-amd-epyc.md).  Why MTCNN over Haar: it finds frontal faces
with closed eyes, strong expressions or sunglasses that the cascade misses (benchmarks/results/face_detector.md).
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import EdgeAffectError
from ..lazy import lazy_import
from .blazeface import VARIANTS, BlazeFaceDetector
from .blazeface import WEIGHTS as BLAZEFACE
from .face_nets import RUNTIME_ORDER, DetectorNet, Face, installed_runtime, net_runtime
from .faces import Box, HaarFaceDetector

cv2 = lazy_import("cv2", "")

WEIGHTS = Path(__file__).with_name("weights") / "mtcnn"
DETECTORS = ("auto", "blazeface", "blazeface-short", "mtcnn", "haar")
def mtcnn_runtime() -> str | None:
    """The runtime for the bundled MTCNN nets, or None."""
    return installed_runtime([WEIGHTS / f"{n}.onnx" for n in ("pnet", "rnet", "onet")])


def blazeface_runtime() -> str | None:
    """The runtime for the bundled BlazeFace nets, or None."""
    return installed_runtime([BLAZEFACE / v.file for v in VARIANTS.values()], RUNTIME_ORDER["BlazeFace"])


def resolve_detector(name: str, say: Callable[[str], None] | None = None) -> str:
    """The detector that ``name`` means here: ``auto`` is ``blazeface`` (full range) when a runtime for it is
    installed, else ``haar`` (told through ``say`` once).  Caches are keyed by the resolved name."""
    if name not in DETECTORS:
        raise EdgeAffectError(f"unknown face detector {name!r} (available: {', '.join(DETECTORS)})")
    if name != "auto":
        return name
    if blazeface_runtime() is not None:
        return "blazeface"
    if say is not None:
        say("face detector: BlazeFace needs onnxruntime or openvino (pip install 'edgeaffect[onnxruntime]'); "
            "using OpenCV Haar")
    return "haar"


def make_detector(name: str = "auto", threads: int | None = 1, say: Callable[[str], None] | None = None):
    """A detector object (``detect(frame_bgr) -> boxes``, largest first) for ``name`` (see :func:`resolve_detector`)."""
    resolved = resolve_detector(name, say)
    if resolved == "haar":
        return HaarFaceDetector()
    if resolved.startswith("blazeface"):

        return BlazeFaceDetector("short" if resolved == "blazeface-short" else "full", threads=threads)
    return MtcnnFaceDetector(threads=threads)


CUSTOM_FORM = "'package.module:Class' (a class with detect(frame_bgr) -> [(x, y, w, h), ...])"


def check_detector_name(name: str) -> None:
    """Refuse, before anything is imported or opened, a detector name that cannot be a detector."""
    if name in DETECTORS:
        return
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", name):
        raise EdgeAffectError(f"--detector must be one of {', '.join(DETECTORS)} or {CUSTOM_FORM}, got {name!r}")
    module = name.partition(":")[0]
    if module.split(".")[0] in sys.stdlib_module_names:
        raise EdgeAffectError(f"--detector {name}: {module} is Python's standard library, not a face detector; "
                              f"give {CUSTOM_FORM}")


def load_custom_detector(name: str):
    """The detector ``package.module:Class`` names, refused in one line unless it is a detector class.

    Importing runs the module's code, as any Python plugin does: only modules outside the standard library
    are imported (nothing there detects faces; ``os:path`` or ``antigravity:X`` would only run or misuse it),
    and only a class whose instances have ``detect(frame)`` (what :class:`.faces.FaceDetector` asks) is built.
    """
    import importlib
    check_detector_name(name)
    module, _, cls_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name, None)
    except Exception as exc:  # the user's module failed to import: its own error, in one line
        raise EdgeAffectError(f"cannot load face detector {name!r}: {type(exc).__name__}: {exc}") from None
    if cls is None:
        raise EdgeAffectError(f"cannot load face detector {name!r}: {module} has no {cls_name}")
    if not inspect.isclass(cls) or not callable(getattr(cls, "detect", None)):
        what = "a class without detect(frame)" if inspect.isclass(cls) else f"not a class ({type(cls).__name__})"
        raise EdgeAffectError(f"--detector {name}: {cls_name} is {what}, not a face detector class; give {CUSTOM_FORM}")
    try:
        return cls()
    except Exception as exc:
        raise EdgeAffectError(f"face detector {name}: {cls_name}() failed: {type(exc).__name__}: {exc}") from None


def _nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first (boxes x1, y1, x2, y2).

    ``union`` (IoU, stages 1-2) runs in OpenCV, with areas ``w * h`` as torchvision's ``nms`` in the
    reference; ``min`` (stage 3, a handful of boxes) is MTCNN's own form with +1 pixel areas.
    """
    if not len(boxes):
        return np.zeros(0, np.int64)
    if mode == "union":
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], 1).astype(np.float64)
        kept = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, thresh)   # scores are probabilities
        return np.asarray(kept, np.int64).reshape(-1)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = np.argsort(scores)[::-1], []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[w * h / np.minimum(area[i], area[rest]) <= thresh]
    return np.asarray(keep, np.int64)


def _square(b: np.ndarray) -> np.ndarray:
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    out = b.copy()
    out[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, :2] + side[:, None]
    return out


def _regress(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
    out = b.copy()
    out[:, :4] = b[:, :4] + reg[:, :4] * np.stack([w, h, w, h], 1)
    return out


class MtcnnFaceDetector:
    """MTCNN (Zhang et al. 2016) as facenet-pytorch runs it, with the nets in ONNX and the glue in NumPy.

    Frames are first shrunk so their long side is at most ``max_side``; ``min_face`` is the smallest face
    searched for, in pixels of that shrunk frame (it sets the number of pyramid scales, hence the cost).
    """

    name = "mtcnn"

    def __init__(self, min_face: int = 32, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709, max_side: int = 640,
                 threads: int | None = 1, runtime: str | None = None):
        runtime = net_runtime("MTCNN", runtime, None if runtime else mtcnn_runtime())
        self.nets = {n: DetectorNet(WEIGHTS / f"{n}.onnx", runtime, threads) for n in ("pnet", "rnet", "onet")}
        self.runtime, self.min_face, self.thresholds, self.factor, self.max_side = \
            runtime, min_face, tuple(thresholds), factor, max_side

    def detect(self, frame_bgr: np.ndarray) -> list[Box]:
        """Faces in the frame, largest first (the :class:`~.faces.FaceDetector` interface)."""
        return [f.box for f in self.detect_faces(frame_bgr)]

    def detect_faces(self, frame_bgr: np.ndarray) -> list[Face]:
        """Faces with score and five landmarks, largest first."""
        h, w = frame_bgr.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        img = frame_bgr if frame_bgr.ndim == 3 else cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        if s < 1.0:
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        boxes = self._stage1(img)
        if len(boxes):
            boxes = self._refine(img, boxes)
        faces = self._stage3(img, boxes) if len(boxes) else []
        out = [Face(tuple(int(round(v / s)) for v in f.box), f.score, f.landmarks / s) for f in faces]
        return sorted(out, key=lambda f: f.box[2] * f.box[3], reverse=True)

    def _run(self, net: str, images: list[np.ndarray], size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """A net on BGR images (resized to ``size`` when given): one OpenCV call makes MTCNN's input,
        RGB, ``(x - 127.5) / 128``, NCHW float32."""
        blob = cv2.dnn.blobFromImages(images, 0.0078125, size or images[0].shape[1::-1], (127.5, 127.5, 127.5),
                                      swapRB=True, crop=False)
        return self.nets[net](blob)

    def _stage1(self, bgr: np.ndarray) -> np.ndarray:
        """P-Net over the image pyramid: candidate boxes [N, 9] (x1, y1, x2, y2, score, 4 regressions)."""
        h, w = bgr.shape[:2]
        scale, side, found, im = 12.0 / self.min_face, min(h, w) * 12.0 / self.min_face, [], bgr
        while side >= 12:
            # each level from the one before: cheap, and a 0.709 step needs no area filter
            im = cv2.resize(im, (int(w * scale + 1), int(h * scale + 1)),
                            interpolation=cv2.INTER_AREA if im is bgr else cv2.INTER_LINEAR)
            reg, prob = self._run("pnet", [im])
            ys, xs = np.nonzero(prob[0, 1] >= self.thresholds[0])
            if len(ys):
                q1 = np.floor((2 * np.stack([xs, ys], 1) + 1) / scale)
                q2 = np.floor((2 * np.stack([xs, ys], 1) + 12) / scale)
                b = np.concatenate([q1, q2, prob[0, 1, ys, xs, None], reg[0][:, ys, xs].T], 1)
                found.append(b[_nms(b[:, :4], b[:, 4], 0.5)])
            scale, side = scale * self.factor, side * self.factor
        if not found:
            return np.zeros((0, 5), np.float32)
        b = np.concatenate(found)
        b = b[_nms(b[:, :4], b[:, 4], 0.7)]
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        b = np.concatenate([b[:, :4] + b[:, 5:9] * np.stack([bw, bh, bw, bh], 1), b[:, 4:5]], 1)
        return _square(b)

    def _crops(self, bgr: np.ndarray, boxes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """The image regions of ``boxes`` (clipped as facenet-pytorch clips them), and which boxes had one."""
        h, w = bgr.shape[:2]
        b = np.trunc(boxes[:, :4]).astype(int)
        x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
        ex, ey = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
        ok = (ey > y - 1) & (ex > x - 1)
        return [bgr[y[k] - 1:ey[k], x[k] - 1:ex[k]] for k in np.flatnonzero(ok)], ok

    def _refine(self, bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net: keep the likely faces among the candidates, regress and square them."""
        crops, ok = self._crops(bgr, boxes)
        boxes = boxes[ok]
        if not len(boxes):
            return boxes
        reg, prob = self._run("rnet", crops, (24, 24))
        keep = prob[:, 1] > self.thresholds[1]
        b = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], 1)
        pick = _nms(b[:, :4], b[:, 4], 0.7)
        return _square(_regress(b[pick], reg[keep][pick]))

    def _stage3(self, bgr: np.ndarray, boxes: np.ndarray) -> list[Face]:
        """O-Net: final faces, scores and landmarks."""
        crops, ok = self._crops(bgr, boxes)
        boxes = boxes[ok]
        if not len(boxes):
            return []
        reg, marks, prob = self._run("onet", crops, (48, 48))
        keep = prob[:, 1] > self.thresholds[2]
        b, reg, marks = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], 1), reg[keep], marks[keep]
        wh = (b[:, 2:4] - b[:, 0:2] + 1)
        pts = np.stack([wh[:, :1] * marks[:, :5] + b[:, :1] - 1, wh[:, 1:2] * marks[:, 5:] + b[:, 1:2] - 1], 2)
        b = _regress(b, reg)
        pick = _nms(b[:, :4], b[:, 4], 0.7, "min")
        faces = []
        for i in pick:
            x1, y1, x2, y2 = b[i, :4]
            faces.append(Face((int(round(x1)), int(round(y1)), int(round(x2 - x1)), int(round(y2 - y1))),
                              float(b[i, 4]), pts[i].astype(np.float32)))
        return faces


# Five-point template of a 112x112 aligned face (the ArcFace/InsightFace reference points).
_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                          [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def alignment(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The 2x3 similarity transform that moves five landmarks onto the standard ``size`` template."""
    m, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), _TEMPLATE_112 * (size / 112.0),
                                       method=cv2.LMEDS)
    if m is None:
        raise EdgeAffectError("cannot align a face from degenerate landmarks")
    return m


def align_face(frame_bgr: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """A ``size`` x ``size`` crop with the eyes, nose and mouth corners on the standard template,
    as aligned-face datasets such as Aff-Wild2's ``cropped_aligned`` are made."""
    return cv2.warpAffine(frame_bgr, alignment(landmarks, size), (size, size), borderMode=cv2.BORDER_REPLICATE)
