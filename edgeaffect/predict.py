"""From a video, a camera, an image folder or arrays to per-frame, per-face predictions in one call.

    import edgeaffect as ea

    with ea.Predictor("runs/eri") as p:          # a run, a bundle, an exported file or an ea.load(...) model
        preds = p.predict("clip.mp4")            # or 0 (a camera), "frames/", "face.jpg", an array [N, H, W, 3]
    df = preds.to_pandas()                       # frame, time, face, x, y, w, h, label, one column per label

The work is the demo's (edgeaffect/demo): the same face detector, IoU tracker, crops, frame windows at the
model's rate, audio windows of the file's track, batching and output reading, run in its sync mode so every
frame gets the prediction of its own newest window. Only the defaults differ: the detector runs on every frame
and scores are not smoothed (``detect_every`` and ``smoothing`` give the demo's behaviour back).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .data.feeds import audio_input
from .demo.pipeline import Demo, DemoConfig
from .demo.runner import open_model
from .demo.session import make_detector, source_audio
from .demo.sinks import ProgressSink
from .demo.sources import END, IMAGE_SUFFIXES, OK, FileAudio, Read, open_source
from .errors import EdgeAffectError
from .lazy import lazy_import

cv2 = lazy_import("cv2", "")

log = logging.getLogger("edgeaffect.predict")

COLUMNS = ("frame", "time", "face", "x", "y", "w", "h", "label")


@dataclass
class Predictions:
    """One record per face per frame: ``frame`` (index), ``time`` (s), ``face`` (track id, stable while the
    face is tracked), ``box`` [x, y, w, h], ``label`` (None for valence-arousal, and for multi-label outputs
    with no label over 0.5) and ``scores`` {label: value} (empty until the face's first window is ready);
    multi-label models add ``labels``, body models ``body_box``."""

    records: list[dict]
    frames: int                      # frames processed, those without a face included
    labels: tuple[str, ...]
    source: str = ""
    stats: dict = field(default_factory=dict)   # the demo's timing summary (fps, per-stage ms)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict:
        return self.records[i]

    def __repr__(self) -> str:
        faces = len({r["face"] for r in self.records})
        return f"Predictions({len(self.records)} face records over {self.frames} frames, {faces} face(s), {self.source})"

    def to_pandas(self):
        """A DataFrame with one row per record: ``COLUMNS`` then one score column per label."""
        try:
            import pandas as pd
        except ImportError:
            raise EdgeAffectError("to_pandas() needs pandas, which is not installed: pip install pandas "
                                  "(the same records are in .records as plain dicts)") from None
        rows = []
        for r in self.records:
            x, y, w, h = r["box"]
            row = {"frame": r["frame"], "time": r["time"], "face": r["face"], "x": x, "y": y, "w": w, "h": h,
                   "label": r["label"]}
            row.update({name: r["scores"].get(name, np.nan) for name in self.labels})
            row.update({k: r[k] for k in ("labels", "body_box") if k in r})
            rows.append(row)
        return pd.DataFrame(rows, columns=[*COLUMNS, *self.labels] +
                            [k for k in ("labels", "body_box") if any(k in r for r in self.records)])


class ArraySource:
    """BGR uint8 frames held in memory (``[N, H, W, 3]``, a list of ``[H, W, 3]``, or one image) as a demo
    source; media time is ``index / fps``. Frames are copied as they are read (the demo draws on them)."""

    live = False
    loop = False

    def __init__(self, frames, fps: float = 30.0, name: str = "arrays"):
        self.frames = _as_frames(frames)
        self.fps, self.name, self.frame_count = float(fps), name, len(self.frames)
        self._i = 0

    def open(self) -> None:
        self._i = 0

    def read(self):
        if self._i >= len(self.frames):
            return Read(END)
        img, t = self.frames[self._i].copy(), self._i / self.fps
        self._i += 1
        return Read(OK, img, t)

    def close(self) -> None:
        pass


def _as_frames(frames) -> list[np.ndarray]:
    """A list of [H, W, 3] uint8 frames, or one clear line about what was given instead."""
    if isinstance(frames, np.ndarray):
        frames = [frames] if frames.ndim == 3 else list(frames) if frames.ndim == 4 else None
        if frames is None:
            raise EdgeAffectError("arrays must be one BGR image [H, W, 3] or frames [N, H, W, 3] (uint8)")
    frames = list(frames)
    if not frames:
        raise EdgeAffectError("no frames given (an empty array or list)")
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or min(f.shape[:2]) < 16:
            raise EdgeAffectError(f"frame {i} is {f.dtype} {list(f.shape)}: frames must be BGR uint8 [H, W, 3] "
                                  f"(OpenCV's layout) of at least 16x16 pixels")
    return [np.asarray(f) for f in frames]


class _Collector:
    """A demo sink keeping one record per face, with the unrounded scores of the demo's tracks."""

    def __init__(self):
        self.demo, self.records, self.frames = None, [], 0

    def write(self, frame, record: dict | None) -> None:
        if record is None:
            return
        self.frames += 1
        for f in record["faces"]:
            raw = self.demo.scores.get(f["track"]) if f["scores"] else None
            scores = {} if raw is None else {n: float(v) for n, v in zip(self.demo.labels, raw)}
            rec = {"frame": record["frame"], "time": record["time"], "face": f["track"], "box": f["box"],
                   "label": f["label"], "scores": scores}
            rec.update({k: f[k] for k in ("labels", "body_box") if k in f})
            self.records.append(rec)

    def close(self) -> None:
        pass


class Predictor:
    """A model, its face detector and the demo's preprocessing, ready to :meth:`predict` any number of sources.

    ``model``: a run or bundle folder, an exported file (``.onnx``, ``.xml``, ``.engine``), a model opened
    with :func:`edgeaffect.load`, or None for the default zoo model. ``runtime``/``precision``/``threads``
    pick the artifact of a run as ``edgeaffect demo`` does; ``detector``: auto (BlazeFace full range), blazeface, blazeface-short, mtcnn, haar,
    ``package.module:Class`` or an object with ``detect(frame_bgr)``.
    """

    def __init__(self, model: Any = None, runtime: str = "auto", precision: str = "auto", threads: int = 1,
                 detector: Any = "auto", detect_every: int = 1, max_faces: int = 4, smoothing: float = 0.0):
        if not 0.0 <= smoothing < 1.0:
            raise EdgeAffectError(f"smoothing must be in [0, 1) (0: off; the demo uses 0.6), got {smoothing}")
        if hasattr(model, "infer") and hasattr(model, "spec"):
            self.runner, self.spec, self._own = model, model.spec, False
        else:
            self.runner, self.spec = open_model(model, runtime, precision, threads=threads, batch=max_faces)
            self._own = True
        self.detector = make_detector(detector) if isinstance(detector, str) else detector
        self.detect_every, self.max_faces, self.smoothing = int(detect_every), int(max_faces), float(smoothing)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.spec.labels)

    def predict(self, source: Any, fps: float = 30.0, max_frames: int | None = None, audio: np.ndarray | None = None,
                progress: bool = False) -> Predictions:
        """Predictions for ``source``: a video file or URL, a camera index, an image folder or image file, or
        BGR uint8 arrays. ``fps``: the frame rate of a folder or arrays (their media time); ``audio``: mono
        samples at the model's rate to go with arrays (an audio-visual model hears a file's own track, else
        silence). A camera runs until ``max_frames`` or Ctrl-C, which ends it with the frames so far."""
        src, name = self._open(source, fps)
        sound = self._audio(source, name, audio)
        collector = _Collector()
        sinks: list = [collector]
        if progress:
            sinks.append(ProgressSink(lambda: getattr(src, "frame_count", None), label="predict"))
        cfg = DemoConfig(detect_every=self.detect_every, sync=True, max_faces=self.max_faces,
                         smoothing=self.smoothing, max_frames=max_frames)
        demo = Demo(self.runner, self.spec, self.detector, cfg, sinks, audio=sound)
        collector.demo = demo
        try:
            stats = demo.run(src)
        except KeyboardInterrupt:
            if not src.live:
                raise
            stats = demo.stats
        finally:
            for s in sinks[1:]:
                s.close()
        return Predictions(collector.records, collector.frames, self.labels, name, stats.summary())

    def _open(self, source: Any, fps: float):
        """(demo source, its name) for anything :meth:`predict` takes."""
        if isinstance(source, bool) or source is None:
            raise EdgeAffectError(f"cannot predict on {source!r}: give a video file, a camera index, an image "
                                  f"folder or file, or BGR uint8 arrays")
        if isinstance(source, (int, np.integer)):
            return open_source(str(int(source))), f"camera {source}"
        if isinstance(source, (str, Path)):
            p = Path(str(source))
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                return ArraySource(_read_image(p), fps, str(p)), str(p)
            src = open_source(str(source), folder_fps=fps)
            return src, str(source)
        return ArraySource(source, fps), "arrays"

    def _audio(self, source: Any, name: str, samples: np.ndarray | None):
        """The audio feed of an audio-visual model: given samples, else the source file's track (or None)."""
        if audio_input(self.spec) is None:
            if samples is not None:
                log.warning("%s takes no audio: the samples given are not used", self.spec.name)
            return None
        if samples is not None:
            return _SampleAudio(samples, int(self.spec.preprocessing.get("sample_rate", 16000)))
        if isinstance(source, (str, Path)) and Path(str(source)).is_file():
            return source_audio(str(source), self.spec)
        log.warning("model %s takes audio but %s brings none: feeding silence (pass audio=...)", self.spec.name, name)
        return None

    def close(self) -> None:
        """Close the model opened here (one passed in stays open)."""
        close = getattr(self.runner, "close", None)
        if self._own and close:
            close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EdgeAffectError(f"cannot read image {path}")
    return img


class _SampleAudio(FileAudio):
    """Samples given in memory, windowed by media time exactly as a file's track is."""

    def __init__(self, samples: Sequence[float] | np.ndarray, sample_rate: int):
        self.sr, self.period = int(sample_rate), None
        self.samples = np.asarray(samples, np.float32).reshape(-1)
