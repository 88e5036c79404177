"""The demo loop: read -> detect/track -> crop into ring buffers -> (worker) infer -> smooth -> overlay -> sinks.

Capture and display run on the calling thread and never wait for the model:
the worker takes the newest windows whenever it is free.  Live sources are read
on their own thread into a one-frame slot (older unread frames are dropped and
counted), files are read frame by frame so every input frame is annotated.
Every stage is timed; :class:`Stats` turns the timings into the ``--bench``
summary, against the frame budget (1/fps of the source).

Detection runs on every frame by default (``detect_every=0``) as long as it fits
the frame budget: in async mode the detector takes every frame it is free for
(a frame that comes while it is busy is tracked only), in sync mode it skips
frames only while its recent cost exceeds the budget.  The tracker keeps the
identities across the frames that are not detected and across short misses.

:class:`Demo`'s public steps (:meth:`Demo.open`, :meth:`Demo.advance`,
:meth:`Demo.request`, :meth:`Demo.apply`, :meth:`Demo.emit`, :meth:`Demo.close`)
are what :class:`.multi.MultiDemo` drives for each of several sources.
"""
from __future__ import annotations

import logging
import math
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
from ..data.feeds import (audio_input, audio_samples, audio_seconds, clip_frames, crop_regions, face_size,
                          model_fps, output_kind, region_box, region_order)
from .smoothing import EMASmoother
from .sources import CORRUPT, END, OK, Read, Reconnecting, Source
from .tracker import IoUTracker
from .worker import DetectorWorker, InferenceWorker, Request, lower_priority

log = logging.getLogger("edgeaffect.demo")

MAX_PHASES = 4
STAGES = ("decode", "detect", "track", "preprocess", "infer", "overlay", "sink")


@dataclass
class DemoConfig:
    detect_every: int = 0          # 0: detect every frame that fits the frame budget; N: every N frames
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
    window_rate: float = 16.0      # new windows a second a temporal model aims for (its crops' fps x phases)
    file_readers: bool = True      # several sources: read realtime files on their own threads, as cameras


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
    detect_ran: int = 0          # frames the detector ran on (the others were tracked only)
    fresh: int = 0               # frames with faces whose every prediction came from this frame or the one before
    budget: float = 0.0          # the frame budget (1/fps of the source), seconds
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
            "frame_budget_ms": self.budget * 1000,
            "detection": {"ran": self.detect_ran, "skipped": max(0, self.frames - self.detect_ran),
                          "every_frame_pct": 100.0 * self.detect_ran / self.frames if self.frames else 0.0},
            "fresh_pct": 100.0 * self.fresh / self.faces if self.faces else 0.0,
        }


class LiveReader:
    """Reads a live source on a thread into a one-frame slot: the newest frame wins, older unread ones are dropped."""

    # decoding runs a frame ahead, so it can wait a little: a few steps below the loop and the model, whose
    # delays make predictions late, and above the detector (:class:`.worker.DetectorWorker`)
    nice = 3

    def __init__(self, source, stats: Stats, stop: threading.Event, wake: threading.Event | None = None,
                 pace: float | None = None):
        """``pace``: a file read as a camera: each frame is handed over at ``pace + its media time`` (perf_counter),
        so decoding runs on this thread (OpenCV releases the GIL) and a busy loop drops frames as a camera's does."""
        self.source, self.stats, self.stop, self.wake = source, stats, stop, wake  # wake: set on every new frame
        self.pace = pace
        self._cond = threading.Condition()
        self._slot: tuple[Read, float, float] | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="edgeaffect-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lower_priority(self.nice)
        while not self.stop.is_set():
            t0 = time.perf_counter()
            r = self.source.read()
            dt = time.perf_counter() - t0
            if self.pace is not None and r.time is not None:
                delay = self.pace + r.time - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    return
            with self._cond:
                if r.status == END:
                    self._ended = True
                    self._cond.notify_all()
                    if self.wake is not None:
                        self.wake.set()
                    return
                if self._slot is not None and self._slot[0].status == OK:
                    self.stats.dropped_frames += 1
                self._slot = (r, time.perf_counter(), dt)
                self._cond.notify_all()
            if self.wake is not None:
                self.wake.set()

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


@dataclass
class _Frame:
    """A decoded frame on its way through the stages."""

    image: np.ndarray
    index: int
    t: float            # media time (s)
    captured: float     # perf_counter when it was captured
    tracks: list = field(default_factory=list)
    ready: list = field(default_factory=list)   # track ids whose windows are full


@dataclass
class Loop:
    """State of one source's run (:meth:`Demo.open`): the opened source, workers, counters carried between frames."""

    source: Source
    worker: InferenceWorker
    detw: DetectorWorker | None
    reader: LiveReader | None
    start: float
    last_t: float = 0.0
    fresh: bool = False          # a ring got a new crop since the last submission
    frame_i: int = -1
    last_detect: int = -10**9
    last_frame: np.ndarray | None = None
    damaged: bool = False        # the previous read was a corrupt frame (one log line per damaged stretch)
    own_worker: bool = True      # False when the worker is shared by several sources (closed by their owner)
    wait: float = 0.2            # how long a live read waits for a frame (0 when several sources take turns)
    detect_cost: float = 0.0     # recent detection time (EMA, s): what sync mode weighs against the budget
    lookahead: bool = False      # sync at full speed: the next frame decodes and detects while this one is finished
    ahead: object = None         # that next frame (a _Frame, END, or None when there is none yet)
    detecting: int | None = None  # the frame the detector thread is working on (lookahead)

    @property
    def threaded(self) -> bool:
        """Frames come from a reader thread (a camera, or a file read as one): a round may have none yet."""
        return self.reader is not None


class Demo:
    """One demo session over a source, a model runner and a list of sinks."""

    def __init__(self, runner, spec: ModelSpec, detector, config: DemoConfig | None = None,
                 sinks: Sequence = (), audio=None, source_id: int | None = None):
        self.runner, self.spec, self.detector = runner, spec, detector
        self.cfg = config or DemoConfig()
        self.sinks = list(sinks)
        self.audio = audio
        self.source_id = source_id              # set when the demo is one of several sources (JSONL "source")
        self.stats = Stats()
        self.status = ""
        pre = spec.preprocessing
        self.size = face_size(pre)
        self.regions = region_order(spec)       # what each window crops around a face (face, fullbody, body)
        self.kind = output_kind(spec)
        self.margin = self.cfg.face_margin if self.cfg.face_margin is not None else float(pre.get("face_margin", 0.2))
        self.T = max(1, clip_frames(spec))
        self.fps = model_fps(pre) if self.T > 1 else 0.0
        # a temporal model samples few frames a second (ERI: 8); windows offset by a fraction of that period
        # give it a fresh prediction cfg.window_rate times a second (FrameRing's phases), at most 4 windows per
        # sampled frame (a body model sampling 1 frame a second predicts 4 times a second, not 16)
        self.phases = min(MAX_PHASES, max(1, math.ceil(self.cfg.window_rate / self.fps))) if self.fps else 1
        self.labels = list(spec.labels)
        self.needs_audio = audio_input(spec) is not None
        self.audio_ring = AudioRing(audio_seconds(spec), int(pre.get("sample_rate", 16000))) \
            if self.needs_audio else None
        # a face missed on a few frames keeps its id: with detection every frame, two missed rounds are 2 frames
        self.tracker = IoUTracker(max_tracks=self.cfg.max_faces, keep_frames=10)
        self.smoother = EMASmoother(self.cfg.smoothing)
        self.rings: dict[int, FrameRing] = {}
        self.scores: dict[int, np.ndarray] = {}
        self.pred_at: dict[int, float] = {}    # capture time of the newest frame behind each track's scores

    def set_status(self, msg: str) -> None:
        self.status = msg

    # ------------------------------------------------------------------ main loop
    def run(self, source: Source, stop: threading.Event | None = None) -> Stats:
        """Process ``source`` to its end (or ``stop``, ``max_frames``, a sink's quit); one stage per method."""
        stop = stop or threading.Event()
        lp = self.open(source, stop)
        try:
            while not stop.is_set() and not self.limit_reached():
                self.check(lp)
                frame = self.advance(lp, stop)
                if frame is END:
                    break
                if frame is None:
                    continue
                self._submit(lp, frame, frame.ready)
                self._collect(lp.worker)
                if self.emit(lp, frame):
                    break
        finally:
            self.close(lp, stop)
        return self.stats

    def advance(self, lp: "Loop", stop: threading.Event):
        """Decode, audio, detect/track and crop one frame: the frame with its tracks and ready ids, None or END."""
        frame = lp.ahead if lp.ahead is not None else self._decode(lp, stop)   # decoded ahead (sync, full speed)
        lp.ahead = None
        if frame is END or frame is None:
            return frame
        self._feed_audio(lp, frame)
        frame.tracks = self._detect_and_track(lp, frame, stop)
        frame.ready = self._crop(lp, frame, frame.tracks)
        return frame

    def open(self, source: Source, stop: threading.Event, worker: InferenceWorker | None = None,
             wake: threading.Event | None = None) -> "Loop":
        """Open the source (behind reconnection when live), start the workers, warm the model up.

        ``worker``/``wake``: a worker shared with other sources (already warm) and the event their readers
        set, so one loop can take turns over several sources without waiting on any one of them; a file
        played ``realtime`` beside others is then read on its own thread as a camera is (decoding on every
        core, a late frame dropped and counted rather than delaying every source)."""
        if source.live:
            source = Reconnecting(source, self.set_status, base_delay=self.cfg.reconnect_delay,
                                  max_retries=self.cfg.reconnect_retries, stop=stop.is_set)
        source.open()
        if self.audio is not None and getattr(source, "loop", False) and getattr(source, "frame_count", None):
            self.audio.period = source.frame_count / source.fps
        own = worker is None
        if own:
            worker = InferenceWorker(self.runner, self.spec, self.cfg.max_batch)
            self.warm_up(worker)
        # sync at full speed (a file, not paced): frames still wait for their own detection, one frame ahead
        lookahead = self.cfg.sync and not self.cfg.realtime and not source.live
        detw = DetectorWorker(self.detector, self.cfg.max_faces, nice=0 if lookahead else None) \
            if lookahead or not self.cfg.sync else None
        start = time.perf_counter()
        paced = not own and self.cfg.realtime and not source.live and self.cfg.file_readers
        reader = LiveReader(source, self.stats, stop, wake, pace=start if paced else None) \
            if source.live or paced else None
        self.stats.budget = 1.0 / (getattr(source, "fps", 0.0) or 30.0)
        return Loop(source, worker, detw, reader, start, own_worker=own, wait=0.2 if own else 0.0,
                    lookahead=lookahead)

    def limit_reached(self) -> bool:
        """True once ``max_frames`` frames were processed."""
        return self.cfg.max_frames is not None and self.stats.frames >= self.cfg.max_frames

    @staticmethod
    def check(lp: "Loop") -> None:
        """Raise (one line) when the model or the detector failed on its thread."""
        if lp.worker.error is not None:
            raise EdgeAffectError(f"the model failed during the demo: {lp.worker.error}") from lp.worker.error
        if lp.detw is not None and lp.detw.error is not None:
            raise EdgeAffectError(f"the face detector failed: {lp.detw.error}") from lp.detw.error

    def _decode(self, lp: "Loop", stop: threading.Event):
        """The next good frame, ``None`` when there is none yet (or it was corrupt), :data:`END` at the end."""
        st = self.stats
        if lp.reader is None:
            t0 = time.perf_counter()
            r = lp.source.read()
            captured, dec = t0, time.perf_counter() - t0
        else:
            got = lp.reader.get(lp.wait)
            if got is None:
                self._show_status(lp.last_frame)
                return None
            r, captured, dec = got
        if r.status == END:
            return END
        if r.status == CORRUPT:
            st.corrupt += 1
            if not lp.damaged:
                at = f" at {r.time:.2f} s" if r.time is not None else ""
                log.warning("corrupt frame(s)%s skipped (%d so far)", at, st.corrupt)
            lp.damaged = True
            return None
        lp.damaged = False
        st.stages["decode"].append(dec)
        lp.frame_i += 1
        t = r.time if r.time is not None else captured - lp.start
        if st.first_frame is None:
            st.first_frame = captured
        if self.cfg.realtime and lp.reader is None:
            delay = lp.start + t - time.perf_counter()
            if delay > 0:  # the frame "arrives" at its media time, as from a camera
                stop.wait(delay)
                captured = time.perf_counter() - dec
        return _Frame(r.image, lp.frame_i, t, captured)

    def _feed_audio(self, lp: "Loop", frame: "_Frame") -> None:
        """Audio aligned to the frame's media time."""
        if self.audio_ring is not None and self.audio is not None and frame.t > lp.last_t:
            self.audio_ring.push(self.audio.window(frame.t, frame.t - lp.last_t))
        lp.last_t = frame.t

    def _detect_due(self, lp: "Loop", i: int) -> bool:
        """Whether frame ``i`` is detected: every ``detect_every`` frames, or (0, the default) every frame while
        detection fits the frame budget; in sync mode a detector over budget runs every ceil(cost/budget) frames
        (async mode needs no rule: a frame that comes while the detector is busy is not detected)."""
        every = self.cfg.detect_every
        if not every:
            sync = lp.detw is None or lp.lookahead
            over = lp.detect_cost / self.stats.budget if sync and self.stats.budget > 0 else 0.0
            every = max(1, math.ceil(over - 1e-9))
        return i - lp.last_detect >= every

    def _detect_and_track(self, lp: "Loop", frame: "_Frame", stop: threading.Event | None = None) -> list:
        """Detect when due (inline in sync mode, one frame ahead on its thread at full speed, else on its thread
        if it is free); track every frame."""
        st, i = self.stats, frame.index
        if lp.lookahead:
            return self._detect_ahead(lp, frame, stop)
        t1 = time.perf_counter()
        due = self._detect_due(lp, i)
        if lp.detw is None:
            if due:
                lp.last_detect = i
                boxes = list(self.detector.detect(frame.image))[: self.cfg.max_faces]
                self._note_detection(lp, time.perf_counter() - t1)
                st.detect_ran += 1
                t1 = time.perf_counter()
                tracks = self.tracker.update(boxes, i)
            else:
                tracks = self.tracker.predict(i)
        else:
            if due and not lp.detw.busy:
                lp.last_detect = i
                lp.detw.submit((i, frame.image.copy()))
                st.detect_ran += 1
            dets = lp.detw.poll()
            for d in dets:
                st.stages["detect"].append(d.seconds)
            tracks = self.tracker.update(dets[-1].boxes, i) if dets else self.tracker.predict(i)
        st.stages["track"].append(time.perf_counter() - t1)
        return tracks

    def _detect_ahead(self, lp: "Loop", frame: "_Frame", stop: threading.Event | None) -> list:
        """Sync mode at full speed: this frame's detection runs on the detector's thread while the next frame
        decodes, and the next frame's starts before this one is tracked, cropped and inferred.  Each frame still
        waits for its own detection, so the result is the inline one, with the two cores working side by side."""
        if lp.detecting != frame.index and self._detect_due(lp, frame.index):
            self._start_detection(lp, frame)
        if lp.ahead is None:
            lp.ahead = self._decode(lp, stop or threading.Event())
        t1 = time.perf_counter()
        det = lp.detw.next_result(timeout=60.0) if lp.detecting == frame.index else None
        self.check(lp)
        lp.detecting = None
        if isinstance(lp.ahead, _Frame) and self._detect_due(lp, lp.ahead.index):
            self._start_detection(lp, lp.ahead)
        if det is not None:
            self._note_detection(lp, det.seconds)
        tracks = self.tracker.update(det.boxes, frame.index) if det is not None else self.tracker.predict(frame.index)
        self.stats.stages["track"].append(time.perf_counter() - t1)
        return tracks

    def _note_detection(self, lp: "Loop", took: float) -> None:
        """A sync-mode detection's time: into the stats and the recent cost weighed against the frame budget."""
        self.stats.stages["detect"].append(took)
        lp.detect_cost = took if lp.detect_cost == 0 else 0.8 * lp.detect_cost + 0.2 * took

    def _start_detection(self, lp: "Loop", frame: "_Frame") -> None:
        """Hand a frame to the idle detector thread (lookahead); nothing draws on its image before it is done."""
        lp.last_detect = lp.detecting = frame.index
        lp.detw.submit((frame.index, frame.image))
        self.stats.detect_ran += 1

    def _crop(self, lp: "Loop", frame: "_Frame", tracks) -> list[int]:
        """The model's crops (face, or body regions around it) into each track's ring; returns the ready tracks."""
        t2 = time.perf_counter()
        alive = {tr.id for tr in tracks}
        for tid in [k for k in self.rings if k not in alive]:
            del self.rings[tid]
            self.scores.pop(tid, None)
            self.pred_at.pop(tid, None)
        self.smoother.forget(alive)
        for tr in tracks:
            ring = self.rings.setdefault(tr.id, FrameRing(self.T, self.fps, self.phases, self.stats.budget))
            if ring.due(frame.t) and self._box_ok(tr.int_box, frame.image.shape):
                ring.push(crop_regions(frame.image, tr.int_box, self.regions, self.spec.preprocessing, self.margin),
                          frame.t)
                lp.fresh = True
        ready = [tr.id for tr in tracks if tr.id in self.rings and self.rings[tr.id].ready]
        self.stats.stages["preprocess"].append(time.perf_counter() - t2)
        return ready

    def _submit(self, lp: "Loop", frame: "_Frame", ready: list[int]) -> None:
        """Hand the newest windows to the worker; never waits, except in sync mode."""
        if not (ready and lp.fresh):
            return
        if lp.worker.busy:
            self.stats.skipped += 1
            return
        lp.worker.submit(self.request(lp, frame))
        if self.cfg.sync:
            lp.worker.wait_idle(timeout=60.0)

    @staticmethod
    def has_fresh(lp: "Loop", frame: "_Frame") -> bool:
        """True when ``frame`` has ready tracks with crops not handed to the model yet."""
        return bool(frame.ready) and lp.fresh

    def request(self, lp: "Loop", frame: "_Frame") -> Request:
        """The newest window of each ready track (and the audio window); marks them as handed over."""
        ready = frame.ready
        crops = np.stack([self.rings[i].window() for i in ready])
        audio = self.audio_ring.window() if self.audio_ring is not None else None
        lp.fresh = False
        return Request(frame.index, frame.captured, ready, crops, audio)

    def emit(self, lp: "Loop", frame: "_Frame") -> bool:
        """Overlay and sinks; counts the frame (and whether its predictions are fresh). True when a sink asks
        to quit."""
        st, img, tracks = self.stats, frame.image, frame.tracks
        t3 = time.perf_counter()
        # the JSON record only for sinks that take one (a --bench run has none: 16 sources, 480 records a second)
        record = self._record(frame.index, frame.t, tracks, img.shape) if self.sinks else None
        if self._drawn:   # nothing shows or writes frames (--jsonl, --bench): drawing them would be wasted
            elapsed = t3 - (st.first_frame or t3)
            fps = (st.frames + 1) / elapsed if elapsed > 0 else 0.0
            lat = st.latency[-1] * 1000 if st.latency else 0.0
            overlay.draw(img, record["faces"], self.labels, fps, lat, self.status, kind=self.kind)
            st.stages["overlay"].append(time.perf_counter() - t3)
        t4 = time.perf_counter()
        for s in self.sinks:
            s.write(img, record)
        if lp.reader is not None:
            lp.last_frame = img
        st.stages["sink"].append(time.perf_counter() - t4)
        st.frames += 1
        st.faces += bool(tracks)
        st.fresh += bool(tracks) and self._fresh(frame, tracks)
        st.latency.append(time.perf_counter() - frame.captured)
        return any(getattr(s, "quit", False) for s in self.sinks)

    @property
    def _drawn(self) -> bool:
        """Whether any sink takes the annotated frame (``records_only`` sinks take only the JSON record)."""
        return any(not getattr(s, "records_only", False) for s in self.sinks)

    def _fresh(self, frame: "_Frame", tracks) -> bool:
        """Every face on the frame shows a prediction from this frame or the one before (within 1.5 budgets)."""
        limit = frame.captured - 1.5 * (self.stats.budget or 1 / 30)
        return all(self.pred_at.get(tr.id, -math.inf) >= limit for tr in tracks)

    def close(self, lp: "Loop", stop: threading.Event) -> None:
        """Stop the workers, collect what they finished, close audio and (once its reader left) the source."""
        st = self.stats
        stop.set()
        if lp.detw is not None:
            lp.detw.close()
        if lp.own_worker:
            lp.worker.close()
            self._collect(lp.worker)
            st.superseded = lp.worker.dropped
        st.wall = time.perf_counter() - lp.start
        if isinstance(lp.source, Reconnecting):
            st.reconnects = lp.source.reconnects
        if hasattr(self.audio, "close"):
            self.audio.close()
        if lp.reader is None or lp.reader.join():
            lp.source.close()
        else:
            log.warning("capture thread still inside read() after 5 s; leaving %s open", lp.source.name)

    # ------------------------------------------------------------------ helpers
    def warm_up(self, worker: InferenceWorker) -> None:
        """One dummy prediction before the clock starts: first-call costs (runtime graph setup and the like,
        which take seconds) must not land on the first live windows."""
        crops = np.zeros((1, self.T, len(self.regions), self.size, self.size, 3), np.uint8)
        audio = np.zeros(audio_samples(self.spec), np.float32) if self.needs_audio else None
        try:
            worker.process(Request(-1, time.perf_counter(), [0], crops, audio))
        except EdgeAffectError:
            raise
        except Exception as exc:
            raise EdgeAffectError(f"the model failed on its first (warm-up) input: {type(exc).__name__}: {exc}") from exc

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
            self.apply(res)

    def apply(self, res) -> None:
        """Smooth a finished prediction into the scores of the tracks it covers (those still alive)."""
        self.stats.inferences += 1
        self.stats.stages["infer"].append(res.timings["infer"])
        self.stats.stages["prepare"].append(res.timings["prepare"])
        self.stats.pred_age.append(res.done - res.captured)
        for tid, sc in zip(res.track_ids, res.scores):
            if tid in self.rings:
                self.scores[tid] = self.smoother.update(tid, sc)
                self.pred_at[tid] = res.captured

    def _record(self, frame_i: int, t: float, tracks, shape) -> dict:
        faces = [self._face_record(tr, self.scores.get(tr.id), shape) for tr in tracks]
        # "corrupt": frames skipped so far as undecodable, so the last line of a JSONL file carries the run's count
        rec = {"frame": frame_i, "time": round(float(t), 4), "faces": faces, "corrupt": self.stats.corrupt}
        return rec if self.source_id is None else {"source": self.source_id, **rec}

    def _face_record(self, tr, sc, shape) -> dict:
        """One track's JSONL entry: box, scores by label, and the reading of the output kind: ``label`` (top
        class or intensity; for multi-label the top of ``labels``, those above 0.5, so none when no label is on;
        none for valence-arousal), ``body_box``."""
        face = {"track": tr.id, "box": [int(v) for v in tr.int_box], "scores": {}, "label": None}
        if any(r != "face" for r in self.regions):
            face["body_box"] = [int(v) for v in region_box("fullbody", tr.int_box, shape, self.margin)]
        if sc is None:
            return face
        face["scores"] = {name: round(float(v), 4) for name, v in zip(self.labels, sc)}
        if self.kind == "multilabel":
            face["labels"] = [name for name, v in zip(self.labels, sc) if v > 0.5]
            face["label"] = max(face["labels"], key=face["scores"].get, default=None)
        elif self.kind != "circumplex":
            face["label"] = self.labels[int(np.argmax(sc))]
        return face
