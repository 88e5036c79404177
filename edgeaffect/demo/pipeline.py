"""The demo loop: read -> detect/track -> crop into ring buffers -> (worker) infer -> smooth -> overlay -> sinks.

Capture and display run on the calling thread and never wait for the model:
the worker takes the newest windows whenever it is free.  Live sources are read
on their own thread into a one-frame slot (older unread frames are dropped and
counted), files are read frame by frame so every input frame is annotated.
Every stage is timed; :class:`Stats` turns the timings into the ``--bench``
summary.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import EdgeAffectError
from ..spec import ModelSpec
from . import overlay
from .buffers import AudioRing, FrameRing
from .preprocess import audio_input, audio_samples, clip_frames, face_size, model_fps
from .smoothing import EMASmoother
from .sources import CORRUPT, END, OK, Read, Reconnecting, Source
from .tracker import IoUTracker
from .worker import DetectorWorker, InferenceWorker, Request

log = logging.getLogger("edgeaffect.demo")

STAGES = ("decode", "detect", "track", "preprocess", "infer", "overlay", "sink")


@dataclass
class DemoConfig:
    detect_every: int = 5          # run the face detector every N frames, track in between
    sync: bool = False             # detect and infer inline, every frame waits for its prediction (deterministic;
                                   # the throughput of all stages in sequence). Default: both on worker threads.
    max_faces: int = 4             # faces beyond this (smallest first) are ignored
    smoothing: float = 0.6         # EMA weight of the previous scores (0: off)
    max_batch: int = 8             # tracks per inference call
    realtime: bool = False         # pace file playback to the file's fps
    max_frames: int | None = None
    face_margin: float | None = None  # None: the model's preprocessing value
    reconnect_retries: int | None = 10
    reconnect_delay: float = 0.5   # first backoff; doubles up to 8 s


@dataclass
class Stats:
    """Per-stage timings (seconds) and counters of one run."""

    stages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    latency: list[float] = field(default_factory=list)       # capture -> annotated frame out
    pred_age: list[float] = field(default_factory=list)      # capture of newest window frame -> scores ready
    frames: int = 0
    corrupt: int = 0
    dropped_frames: int = 0      # live frames replaced before being processed
    inferences: int = 0
    skipped: int = 0             # windows not submitted because the model was busy
    superseded: int = 0          # submitted windows replaced by newer ones before they ran
    reconnects: int = 0
    faces: int = 0
    wall: float = 0.0
    first_frame: float | None = None

    def summary(self) -> dict:
        def ms(v):
            a = np.asarray(v, float) * 1000
            return {"mean": float(a.mean()) if a.size else 0.0, "p50": float(np.percentile(a, 50)) if a.size else 0.0,
                    "p95": float(np.percentile(a, 95)) if a.size else 0.0, "n": int(a.size)}

        return {
            "fps": self.frames / self.wall if self.wall > 0 else 0.0,
            "frames": self.frames, "wall_s": self.wall,
            "latency_ms": ms(self.latency), "prediction_age_ms": ms(self.pred_age),
            "stages_ms": {k: ms(self.stages.get(k, [])) for k in STAGES + ("prepare",)},
            "inferences": self.inferences, "inference_rate": self.inferences / self.wall if self.wall > 0 else 0.0,
            "skipped_busy": self.skipped, "superseded": self.superseded, "dropped_frames": self.dropped_frames,
            "corrupt_frames": self.corrupt, "reconnects": self.reconnects, "face_frames": self.faces,
        }


class LiveReader:
    """Reads a live source on a thread into a one-frame slot: the newest frame wins, older unread ones are dropped."""

    def __init__(self, source, stats: Stats, stop: threading.Event):
        self.source, self.stats, self.stop = source, stats, stop
        self._cond = threading.Condition()
        self._slot: tuple[Read, float, float] | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="edgeaffect-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            r = self.source.read()
            dt = time.perf_counter() - t0
            with self._cond:
                if r.status == END:
                    self._ended = True
                    self._cond.notify_all()
                    return
                if self._slot is not None and self._slot[0].status == OK:
                    self.stats.dropped_frames += 1
                self._slot = (r, time.perf_counter(), dt)
                self._cond.notify_all()

    def get(self, timeout: float = 0.2) -> tuple[Read, float, float] | None:
        """(read, captured perf_counter, decode seconds); ``None`` on timeout; END read when over."""
        with self._cond:
            if self._slot is None and not self._ended:
                self._cond.wait(timeout)
            if self._slot is not None:
                item, self._slot = self._slot, None
                return item
            if self._ended:
                return Read(END), time.perf_counter(), 0.0
            return None

    def join(self, timeout: float = 5.0) -> bool:
        """Wait for the capture thread to leave ``read()``; True if it did.

        The source must not be closed while the thread is inside ``read()``: releasing an
        OpenCV capture that another thread is decoding from crashes the process.
        """
        self._thread.join(timeout)
        return not self._thread.is_alive()


class Demo:
    """One demo session over a source, a model runner and a list of sinks."""

    def __init__(self, runner, spec: ModelSpec, detector, config: DemoConfig | None = None,
                 sinks: Sequence = (), audio=None):
        self.runner, self.spec, self.detector = runner, spec, detector
        self.cfg = config or DemoConfig()
        self.sinks = list(sinks)
        self.audio = audio
        self.stats = Stats()
        self.status = ""
        pre = spec.preprocessing
        self.size = face_size(pre)
        self.margin = self.cfg.face_margin if self.cfg.face_margin is not None else float(pre.get("face_margin", 0.2))
        self.T = max(1, clip_frames(spec))
        self.fps = model_fps(pre) if self.T > 1 else 0.0
        self.labels = list(spec.labels)
        self.needs_audio = audio_input(spec) is not None
        self.audio_ring = AudioRing(float(pre.get("audio_seconds", 4.0)), int(pre.get("sample_rate", 16000))) \
            if self.needs_audio else None
        self.tracker = IoUTracker(max_tracks=self.cfg.max_faces)
        self.smoother = EMASmoother(self.cfg.smoothing)
        self.rings: dict[int, FrameRing] = {}
        self.scores: dict[int, np.ndarray] = {}

    def set_status(self, msg: str) -> None:
        self.status = msg

    # ------------------------------------------------------------------ main loop
    def run(self, source: Source, stop: threading.Event | None = None) -> Stats:
        from ..data.faces import crop_face

        stop = stop or threading.Event()
        st = self.stats
        if source.live:
            source = Reconnecting(source, self.set_status, base_delay=self.cfg.reconnect_delay,
                                  max_retries=self.cfg.reconnect_retries, stop=stop.is_set)
        source.open()
        if self.audio is not None and getattr(source, "loop", False) and getattr(source, "frame_count", None):
            self.audio.period = source.frame_count / source.fps
        worker = InferenceWorker(self.runner, self.spec, self.cfg.max_batch)
        self._warm_up(worker)
        detw = DetectorWorker(self.detector, self.cfg.max_faces) if not self.cfg.sync else None
        last_detect = -10**9
        reader = LiveReader(source, st, stop) if source.live else None
        start = time.perf_counter()
        last_t, fresh, frame_i = 0.0, False, -1
        last_frame = None
        try:
            while not stop.is_set():
                if self.cfg.max_frames is not None and st.frames >= self.cfg.max_frames:
                    break
                if worker.error is not None:
                    raise EdgeAffectError(f"the model failed during the demo: {worker.error}") from worker.error
                if detw is not None and detw.error is not None:
                    raise EdgeAffectError(f"the face detector failed: {detw.error}") from detw.error
                # ---- decode
                if reader is None:
                    t0 = time.perf_counter()
                    r = source.read()
                    captured, dec = t0, time.perf_counter() - t0
                else:
                    got = reader.get()
                    if got is None:
                        self._show_status(last_frame)
                        continue
                    r, captured, dec = got
                if r.status == END:
                    break
                if r.status == CORRUPT:
                    st.corrupt += 1
                    log.warning("corrupt frame skipped (%d so far)", st.corrupt)
                    continue
                st.stages["decode"].append(dec)
                frame_i += 1
                img = r.image
                t = r.time if r.time is not None else captured - start
                if st.first_frame is None:
                    st.first_frame = captured
                if self.cfg.realtime and not source.live:
                    delay = start + t - time.perf_counter()
                    if delay > 0:  # the frame "arrives" at its media time, as from a camera
                        stop.wait(delay)
                        captured = time.perf_counter() - dec
                # ---- audio aligned to the frame's media time
                if self.audio_ring is not None and self.audio is not None and t > last_t:
                    self.audio_ring.push(self.audio.window(t, t - last_t))
                last_t = t
                # ---- detect (every N frames, on its own thread) / track (every frame)
                t1 = time.perf_counter()
                due = frame_i - last_detect >= max(1, self.cfg.detect_every)
                if detw is None:
                    if due:
                        last_detect = frame_i
                        boxes = list(self.detector.detect(img))[: self.cfg.max_faces]
                        st.stages["detect"].append(time.perf_counter() - t1)
                        t1 = time.perf_counter()
                        tracks = self.tracker.update(boxes, frame_i)
                    else:
                        tracks = self.tracker.predict(frame_i)
                else:
                    if due and not detw.busy:
                        last_detect = frame_i
                        detw.submit((frame_i, img.copy()))
                    dets = detw.poll()
                    for d in dets:
                        st.stages["detect"].append(d.seconds)
                    tracks = self.tracker.update(dets[-1].boxes, frame_i) if dets else self.tracker.predict(frame_i)
                st.stages["track"].append(time.perf_counter() - t1)
                # ---- crops into ring buffers
                t2 = time.perf_counter()
                alive = {tr.id for tr in tracks}
                for tid in [k for k in self.rings if k not in alive]:
                    del self.rings[tid]
                    self.scores.pop(tid, None)
                self.smoother.forget(alive)
                for tr in tracks:
                    ring = self.rings.setdefault(tr.id, FrameRing(self.T, self.fps))
                    if ring.due(t) and self._box_ok(tr.int_box, img.shape):
                        ring.push(crop_face(img, tr.int_box, self.size, self.margin), t)
                        fresh = True
                ready = [tr.id for tr in tracks if tr.id in self.rings and self.rings[tr.id].ready]
                st.stages["preprocess"].append(time.perf_counter() - t2)
                # ---- hand the newest windows to the worker (never waits)
                if ready and fresh:
                    if worker.busy:
                        st.skipped += 1
                    else:
                        crops = np.stack([self.rings[i].window() for i in ready])
                        audio = self.audio_ring.window() if self.audio_ring is not None else None
                        worker.submit(Request(frame_i, captured, ready, crops, audio))
                        fresh = False
                        if self.cfg.sync:
                            worker.wait_idle(timeout=60.0)
                self._collect(worker)
                # ---- overlay + sinks
                t3 = time.perf_counter()
                record = self._record(frame_i, t, tracks)
                now = time.perf_counter()
                elapsed = now - (st.first_frame or now)
                fps = (st.frames + 1) / elapsed if elapsed > 0 else 0.0
                lat = st.latency[-1] * 1000 if st.latency else 0.0
                overlay.draw(img, record["faces"], self.labels, fps, lat, self.status)
                st.stages["overlay"].append(time.perf_counter() - t3)
                t4 = time.perf_counter()
                for s in self.sinks:
                    s.write(img, record)
                if reader is not None:
                    last_frame = img
                st.stages["sink"].append(time.perf_counter() - t4)
                st.frames += 1
                st.faces += bool(record["faces"])
                st.latency.append(time.perf_counter() - captured)
                if any(getattr(s, "quit", False) for s in self.sinks):
                    break
        finally:
            stop.set()
            worker.close()
            if detw is not None:
                detw.close()
            self._collect(worker)
            st.superseded = worker.dropped
            st.wall = time.perf_counter() - start
            if isinstance(source, Reconnecting):
                st.reconnects = source.reconnects
            if hasattr(self.audio, "close"):
                self.audio.close()
            if reader is None or reader.join():
                source.close()
            else:
                log.warning("capture thread still inside read() after 5 s; leaving %s open", source.name)
        return st

    # ------------------------------------------------------------------ helpers
    def _warm_up(self, worker: InferenceWorker) -> None:
        """One dummy prediction before the clock starts: first-call costs (runtime graph setup, librosa's
        numba compilation, which takes seconds) must not land on the first live windows."""
        crops = np.zeros((1, self.T, self.size, self.size, 3), np.uint8)
        audio = np.zeros(audio_samples(self.spec.preprocessing), np.float32) if self.needs_audio else None
        try:
            worker.process(Request(-1, time.perf_counter(), [0], crops, audio))
        except EdgeAffectError:
            raise
        except Exception as exc:
            raise EdgeAffectError(f"the model failed on its first (warm-up) input: {exc}") from exc

    def _show_status(self, last_frame) -> None:
        """While a live stream is down, keep the window/web page showing the last frame with the status."""
        if not self.status or last_frame is None:
            return
        frame = last_frame.copy()
        overlay.draw(frame, [], self.labels, 0.0, 0.0, self.status)
        for s in self.sinks:
            if getattr(s, "live", False):
                s.write(frame, None)

    @staticmethod
    def _box_ok(box, shape) -> bool:
        x, y, w, h = box
        return w >= 8 and h >= 8 and x + w > 0 and y + h > 0 and x < shape[1] and y < shape[0]

    def _collect(self, worker: InferenceWorker) -> None:
        for res in worker.poll():
            self.stats.inferences += 1
            self.stats.stages["infer"].append(res.timings["infer"])
            self.stats.stages["prepare"].append(res.timings["prepare"])
            self.stats.pred_age.append(res.done - res.captured)
            for tid, sc in zip(res.track_ids, res.scores):
                if tid in self.rings:
                    self.scores[tid] = self.smoother.update(tid, sc)

    def _record(self, frame_i: int, t: float, tracks) -> dict:
        faces = []
        for tr in tracks:
            face = {"track": tr.id, "box": [int(v) for v in tr.int_box]}
            sc = self.scores.get(tr.id)
            if sc is not None:
                face["scores"] = {name: round(float(v), 4) for name, v in zip(self.labels, sc)}
                face["label"] = self.labels[int(np.argmax(sc))]
            else:
                face["scores"], face["label"] = {}, None
            faces.append(face)
        return {"frame": frame_i, "time": round(float(t), 4), "faces": faces}
