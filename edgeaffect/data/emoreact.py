"""EmoReact as distributed, and the TSN clip dataset built on it (reference/models.md §5).

Layout::

    <root>/{train,val,test}.csv        ,video,Curiosity,Uncertainty,Excitement,Happiness,Surprise,Disgust,Fear,Frustration,Valence
    <root>/{Train,Validation,Test}/<video>     (e.g. 80sTOYS105_2.mp4)

The first CSV column is an unnamed pandas index; the 8 labels are binary;
Valence (1-7) is read but not used for training.  Column and folder names match
case-insensitively.

Preprocessing (per clip, cached): ``cache_frames`` frames spread evenly over
the clip are decoded; in each, the detected face (BlazeFace by default, Haar as the fallback) that agrees with the clip's face
(within one face width of the median of the frames' largest detections, half
to twice its size) is the face box, so a false detection on the shirt or the
background is not blacked out or cropped as the face; frames without one reuse
the nearest accepted box.  The clip's body box is anchored on the median face
box: 7 face widths wide (an arm stretched sideways or raised reaches about 3.5
face widths from the face centre), from one face height above the face down to
the bottom of the frame, clipped to the frame.
Why not a person detector: MediaPipe Holistic (the seed's choice) and DNN
person detectors need downloaded weights, and OpenCV's bundled HOG people
detector is trained on standing pedestrians at 64x128 and misses the seated,
close-up children of EmoReact's webcam clips; the face detector works on them
and tells where the child is and how large.  A clip with no face anywhere
keeps the whole frame for every stream, as the seed falls back to the full
frame (counted in the report).

Stored per clip: ``face`` and ``fullbody`` crops (RGB uint8, squashed to
``scale_size`` squared like the seed's GroupScale) and the face box inside the
fullbody crop; the ``body`` input is the fullbody crop with that box blacked
out.  Frames where the cascade finds no face get a second try after local
contrast equalisation (CLAHE), which recovers many dark or dimly lit faces.
The cache key is the video's SHA-256 plus the settings, entries are written
atomically, so a changed file or setting never reads a stale entry.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from ..labels import EMOREACT_LABELS as LABELS
from ..lazy import lazy_import
from .csvtable import norm, read_table, unique_keys
from .detectors import resolve_detector
from .faces import consistent_faces, fill_boxes, square_box
from .media import read_frames
from .preprocess import ClipSkipped, FeatureCache, PrepReport, _say, default_workers, make_detector, parallel_map
from .report import progress

cv2 = lazy_import("cv2", "")

SPLITS = ("train", "val", "test")
SPLIT_FOLDERS = {"train": ("Train", "train", "Training"), "val": ("Validation", "validation", "Val", "val"),
                 "test": ("Test", "test")}
INPUT_KINDS = ("face", "body", "fullbody", "fusion")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
CACHE_VERSION = 2


@dataclass(frozen=True)
class Clip:
    video: str                 # the CSV's ``video`` cell, e.g. 80sTOYS105_2.mp4
    split: str                 # train | val | test
    labels: np.ndarray         # [8] float32 in {0, 1}
    valence: float             # NaN when absent
    path: Path | None          # None if the file is absent


def read_split(root: str | os.PathLike, split: str) -> list[Clip]:
    """Parse ``<split>.csv`` and locate each video; raises DataError with file and line on bad content."""
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    csv_path = _find_ci(root, (f"{split}.csv",), want_dir=False)
    if csv_path is None:
        raise DataError(f"{root / f'{split}.csv'} not found: an EmoReact root holds train.csv val.csv test.csv "
                        f"and Train/ Validation/ Test/")
    col, rows = read_table(csv_path, {norm(n): n for n in ("video", *LABELS)}, optional=("valence",))
    val_col = col.get("valence")
    folder = _find_ci(root, SPLIT_FOLDERS[split], want_dir=True)
    clips = []
    for line_no, row, video in unique_keys(csv_path, rows, col["video"], "video", "video name"):
        labels = np.zeros(len(LABELS), np.float32)
        for j, name in enumerate(LABELS):
            cell = row[col[norm(name)]].strip()
            try:
                v = float(cell)
            except ValueError:
                raise DataError(f"{csv_path}:{line_no}: {name} value {cell!r} is not a number") from None
            if v not in (0.0, 1.0):
                raise DataError(f"{csv_path}:{line_no}: {name} = {cell} is not 0 or 1")
            labels[j] = v
        valence = math.nan
        if val_col is not None and row[val_col].strip():
            try:
                valence = float(row[val_col])
            except ValueError:
                raise DataError(f"{csv_path}:{line_no}: Valence {row[val_col]!r} is not a number") from None
        clips.append(Clip(video, split, labels, valence, _find_video(folder, video)))
    if not clips:
        raise DataError(f"{csv_path} lists no videos")
    return clips


def _find_ci(root: Path, names: Sequence[str], want_dir: bool) -> Path | None:
    for n in names:                      # exact names first, then any case
        if (root / n).exists() and (root / n).is_dir() == want_dir:
            return root / n
    lowered = {n.lower() for n in names}
    for entry in sorted(root.iterdir()):
        if entry.name.lower() in lowered and entry.is_dir() == want_dir:
            return entry
    return None


def _find_video(folder: Path | None, video: str) -> Path | None:
    if folder is None:
        return None
    cands = [folder / video] + [folder / f"{Path(video).stem}{s}" for s in VIDEO_SUFFIXES]
    return next((p for p in cands if p.is_file()), None)


# -- per-clip preprocessing ------------------------------------------------------------------------

@dataclass(frozen=True)
class BodyPrepConfig:
    cache_frames: int = 32      # frames kept per clip, evenly spread; TSN samples segments among them
    scale_size: int = 256       # crops are squashed to this square (the seed's GroupScale(256, 256))
    face_margin: float = 0.1    # the seed expands its face box by 10 %
    detector: str = "auto"      # resolved (mtcnn or haar) before the cache key is made

    def fingerprint(self) -> str:
        return json.dumps({"v": CACHE_VERSION, "kind": "emoreact", **asdict(self)}, sort_keys=True)


def local_contrast(frame_bgr: np.ndarray) -> np.ndarray:
    """CLAHE on the lightness channel: a second chance for dark or low-contrast faces the cascade missed."""
    lab = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def body_box(face_boxes: Sequence[tuple], frame_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Face-anchored body box (x, y, w, h): 7 median face widths wide, one face height above the face to the bottom."""
    H, W = frame_shape[:2]
    x, y, w, h = np.median(np.asarray(face_boxes, np.float64), axis=0)
    cx = x + w / 2
    x0, x1 = max(0, int(round(cx - 3.5 * w))), min(W, int(round(cx + 3.5 * w)))
    y0 = max(0, int(round(y - h)))
    return x0, y0, max(1, x1 - x0), max(1, H - y0)


def process_clip(path: Path, cfg: BodyPrepConfig, detector=None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Decode, detect and crop one clip (see the module docstring); raises ClipSkipped with the reason."""
    try:
        frames, fps = read_frames(path, count=cfg.cache_frames)
    except DataError:
        raise ClipSkipped("unreadable or truncated video") from None
    detector = detector or make_detector(cfg.detector)
    raw = [detector.detect(f) or detector.detect(local_contrast(f)) for f in frames]
    accepted = consistent_faces(raw)
    boxes = fill_boxes(accepted)
    n_found = sum(b is not None for b in accepted)
    H, W = frames.shape[1:3]
    ss = cfg.scale_size
    face = np.empty((len(frames), ss, ss, 3), np.uint8)
    full = np.empty_like(face)
    face_box = np.zeros((len(frames), 4), np.float32)   # x0, y0, x1, y1 in [0, 1] of the fullbody crop
    bx, by, bw, bh = body_box(boxes, frames.shape[1:]) if boxes else (0, 0, W, H)
    for i, f in enumerate(frames):
        rgb = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        full[i] = cv2.resize(rgb[by:by + bh, bx:bx + bw], (ss, ss), interpolation=cv2.INTER_AREA)
        if boxes is None:
            face[i] = cv2.resize(rgb, (ss, ss), interpolation=cv2.INTER_AREA)
            continue
        fx, fy, fw, fh = square_box(boxes[i], cfg.face_margin, f.shape)
        face[i] = cv2.resize(rgb[fy:fy + fh, fx:fx + fw], (ss, ss), interpolation=cv2.INTER_LINEAR)
        face_box[i] = [(fx - bx) / bw, (fy - by) / bh, (fx + fw - bx) / bw, (fy + fh - by) / bh]
    np.clip(face_box, 0.0, 1.0, out=face_box)
    info = {"frames_sampled": len(frames), "faces_found": n_found, "fps": fps, "body_box": [bx, by, bw, bh]}
    return {"face": face, "fullbody": full, "face_box": face_box}, info


@dataclass
class BodyPrepReport(PrepReport):
    """The shared preprocessing report plus the clips where no frame had a face (kept, whole frame used)."""

    no_face: int = 0

    def summary(self) -> str:
        extra = f"; {self.no_face} without any detected face (whole frame used)" if self.no_face else ""
        return super().summary() + extra

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "no_face": self.no_face}


def _info(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(bytes(z["info"]).decode())


def _work(args) -> tuple[str, str | None, dict | None, str | None]:
    clip, cfg, cache_root = args
    cache = FeatureCache(cache_root)
    try:
        arrays, info = process_clip(clip.path, cfg)
    except ClipSkipped as why:
        return clip.video, None, None, str(why)
    arrays["info"] = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
    return clip.video, str(cache.save(cache.key([clip.path], cfg), arrays)), info, None


def prepare_clips(clips: Sequence[Clip], cfg: BodyPrepConfig, cache_root: str | os.PathLike,
                  workers: int | None = None, console=None,
                  label: str = "preprocess") -> tuple[list[tuple[Clip, Path]], BodyPrepReport]:
    """Preprocess (or find in the cache) every clip on ``workers`` processes (default: every core);
    bad clips are counted in the report, not fatal.  The cache key holds the detector actually used."""
    cfg = replace(cfg, detector=resolve_detector(cfg.detector, _say(console)))
    cache = FeatureCache(cache_root)
    report = BodyPrepReport(total=len(clips))
    ready: dict[str, Path] = {}
    todo = []
    for clip in clips:
        if clip.path is None:
            report.note("video file missing", clip.video)
            continue
        p = cache.path(cache.key([clip.path], cfg))
        if p.exists():
            ready[clip.video] = p
            report.from_cache += 1
            report.no_face += _info(p)["faces_found"] == 0
        else:
            todo.append(clip)
    if todo:
        args = [(c, cfg, str(cache_root)) for c in todo]
        with progress(console, label, len(todo)) as advance:
            for video, path, info, reason in parallel_map(_work, args, default_workers() if workers is None else workers):
                if path is None:
                    report.note(reason or "unknown", video)
                else:
                    ready[video] = Path(path)
                    report.no_face += info["faces_found"] == 0
                advance()
    report.ok = len(ready)
    return [(c, ready[c.video]) for c in clips if c.video in ready], report


# -- TSN sampling and the dataset ------------------------------------------------------------------

def tsn_indices(n_frames: int, segments: int, train: bool, rand=None) -> np.ndarray:
    """Frame indices as TSN samples them (new_length 1).

    Training: a random offset inside each of ``segments`` equal segments
    (``rand(high, size)`` draws the offsets); evaluation: the segment centres.
    Clips shorter than ``segments`` repeat frames.
    """
    if train:
        avg = n_frames // segments
        if avg > 0:
            return np.arange(segments) * avg + np.asarray(rand(avg, segments))
        if n_frames > segments:
            return np.sort(np.asarray(rand(n_frames, segments)))
        return np.minimum(np.arange(segments), n_frames - 1)
    if n_frames > segments:
        tick = n_frames / segments
        return np.array([int(tick / 2.0 + tick * x) for x in range(segments)])
    return np.minimum(np.arange(segments), n_frames - 1)


class EmoReactDataset:
    """``{"frames": [S, 3, size, size] float32 in [0, 1], ("face": same,) "target": [8]}`` per clip.

    Training (``augment``): TSN random offsets, one horizontal flip per clip and
    a random ``size`` crop of the ``scale_size`` crops; evaluation: segment
    centres, crops resized to ``size`` (as the seed's GroupScale(224, 224)).
    Randomness comes from NumPy's global generator, which the trainer reseeds
    each epoch (and DataLoader seeds in each worker).
    """

    def __init__(self, items: Sequence[tuple[Clip, Path]], input: str, segments: int, size: int, augment: bool,
                 report: BodyPrepReport | None = None):
        if input not in INPUT_KINDS:
            raise DataError(f"unknown input {input!r} (expected one of {', '.join(INPUT_KINDS)})")
        self.items = list(items)
        self.input, self.segments, self.size, self.augment = input, segments, size, augment
        self.report = report

    def __len__(self) -> int:
        return len(self.items)

    @property
    def targets(self) -> np.ndarray:
        return np.stack([c.labels for c, _ in self.items])

    def __getitem__(self, i: int) -> dict:
        clip, path = self.items[i]
        with np.load(path, allow_pickle=False) as z:
            n = len(z["face_box"])
            idx = tsn_indices(n, self.segments, self.augment,
                              lambda hi, k: np.random.randint(0, hi, k))
            need = ("face",) if self.input == "face" else ("fullbody",) if self.input == "fullbody" else ("fullbody", "face")
            arrays = {k: z[k][idx] for k in need}
            boxes = z["face_box"][idx]
        if self.input in ("body", "fusion"):
            arrays["body"] = blackout(arrays.pop("fullbody"), boxes)
        flip = self.augment and bool(np.random.random() < 0.5)
        streams = {"face": "face", "body": "body", "fullbody": "fullbody", "fusion": "body"}
        out = {"frames": self._frames(arrays[streams[self.input]], flip)}
        if self.input == "fusion":
            out["face"] = self._frames(arrays["face"], flip)
        out["target"] = np.asarray(clip.labels, np.float32).copy()
        return out

    def _frames(self, imgs: np.ndarray, flip: bool) -> np.ndarray:
        s, ss = self.size, imgs.shape[1]
        if self.augment and ss > s:
            y0, x0 = (int(v) for v in np.random.randint(0, ss - s + 1, 2))
            imgs = imgs[:, y0:y0 + s, x0:x0 + s]
        elif ss != s:
            imgs = np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in imgs])
        if flip:
            imgs = imgs[:, :, ::-1]
        return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def blackout(imgs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Copy of ``imgs [N, H, W, 3]`` with each frame's box (x0, y0, x1, y1 in [0, 1]) set to black."""
    out = imgs.copy()
    h, w = imgs.shape[1:3]
    for img, (x0, y0, x1, y1) in zip(out, boxes):
        img[int(round(y0 * h)):int(round(y1 * h)), int(round(x0 * w)):int(round(x1 * w))] = 0
    return out


DEFAULT_CACHE = ".cache/edgeaffect"


def load_split(root: str | os.PathLike, split: str, input: str, segments: int, size: int, *,
               augment: bool = False, cache_dir: str | os.PathLike | None = None, cache_frames: int = 32,
               workers: int | None = None, console=None, limit: int | None = None) -> EmoReactDataset:
    """Read, preprocess (cached under ``<root>/.cache/edgeaffect`` by default) and wrap one split.

    Raises DataError when no clip is usable; per-clip problems are in ``dataset.report``.
    """
    root = Path(root)
    clips = read_split(root, split)[:limit]
    cfg = BodyPrepConfig(cache_frames=cache_frames, scale_size=int(round(size * 256 / 224)))
    cache = Path(cache_dir) if cache_dir is not None else root / DEFAULT_CACHE
    items, report = prepare_clips(clips, cfg, cache, workers=workers, console=console, label=f"preprocess {split}")
    if not items:
        raise DataError(f"no usable clip in the {split!r} split of {root}: {report.summary()}")
    return EmoReactDataset(items, input, segments, size, augment, report)
