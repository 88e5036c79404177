"""Inference on its own thread, at its own rate, always on the newest windows.

The capture loop hands over a request with :meth:`InferenceWorker.submit`,
which never blocks: there is one pending slot, and a newer request replaces an
unstarted older one (counted in ``dropped``).  Results are collected with
:meth:`poll`.  So a model slower than the camera lowers the prediction rate,
never the frame rate, and nothing queues without bound.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..data.feeds import feeds_from_crops, scores_from_outputs
from ..spec import ModelSpec


@dataclass
class Request:
    frame: int
    captured: float                    # perf_counter of the newest frame in the windows
    track_ids: list[int]
    crops: np.ndarray | None           # [N, T, R, h, w, 3] BGR uint8, R regions (``feeds.region_order``)
    audio: np.ndarray | None = None    # [samples] mono window (shared by every track)
    captured_by: dict = field(default_factory=dict)   # several sources merged: each one's newest capture


@dataclass
class Result:
    frame: int
    captured: float
    done: float
    track_ids: list[int]
    scores: np.ndarray                 # [N, labels]
    timings: dict[str, float] = field(default_factory=dict)
    captured_by: dict = field(default_factory=dict)   # source -> its newest capture (merged requests)


class SlotWorker:
    """A thread that runs ``process(item)`` on the newest submitted item; one pending slot, never blocks."""

    name = "edgeaffect-worker"
    nice = 0          # added to the thread's nice value where the OS allows (Linux: threads are tasks)

    def __init__(self):
        self._cond = threading.Condition()
        self._pending = None
        self._results: deque = deque(maxlen=64)
        self._stop = False
        self._busy = False
        self.submitted = self.dropped = self.completed = 0
        self.error: BaseException | None = None
        self.on_done = None    # called (no arguments) after each finished item: wakes a loop waiting for frames
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def process(self, item):  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy or self._pending is not None

    def submit(self, item) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = item
            self.submitted += 1
            self._cond.notify()

    def poll(self) -> list:
        with self._cond:
            out = list(self._results)
            self._results.clear()
        return out

    def next_result(self, timeout: float = 10.0):
        """Block until an item is finished and return the oldest result (None on timeout or error): sync mode
        waits for each frame's detection in order this way."""
        end = time.perf_counter() + timeout
        with self._cond:
            while not self._results and self.error is None:
                left = end - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._results.popleft() if self._results else None

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until the pending item is done (end of a file, tests)."""
        end = time.perf_counter() + timeout
        with self._cond:
            while (self._busy or self._pending is not None) and self.error is None:
                left = end - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        if self.nice:
            lower_priority(self.nice)
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                item, self._pending, self._busy = self._pending, None, True
            try:
                res = self.process(item)
            except BaseException as exc:  # surfaced to the capture loop, which stops with a clear message
                with self._cond:
                    self.error, self._busy = exc, False
                    self._cond.notify_all()
                return
            with self._cond:
                self._results.append(res)
                self.completed += 1
                self._busy = False
                self._cond.notify_all()
            if self.on_done is not None:
                self.on_done()


@dataclass
class Detection:
    frame: int
    boxes: list
    seconds: float


class DetectorWorker(SlotWorker):
    """Face detection off the capture thread: item = (frame index, BGR image) -> :class:`Detection`."""

    name = "edgeaffect-detect"
    # the lowest of all: the detector takes the CPU the model, the loop and decoding leave, and the tracker
    # carries the faces meanwhile; 16 sources on 2 cores: 92 % of frames fresh at nice 19 against 81 % at 5
    # (benchmarks/results/2026-12-07-sources-per-box-priorities-amd-epyc.md)
    nice = 19

    def __init__(self, detector, max_faces: int, nice: int | None = None):
        """``nice``: this thread's step instead of the class's (0 where every frame waits for its detection)."""
        self.detector, self.max_faces = detector, max_faces
        if nice is not None:
            self.nice = nice
        super().__init__()

    def process(self, item) -> Detection:
        frame, img = item
        t0 = time.perf_counter()
        boxes = list(self.detector.detect(img))[: self.max_faces]
        took = getattr(self.detector, "last_seconds", None)   # a shared pool: its call without the queueing
        return Detection(frame, boxes, took if took is not None else time.perf_counter() - t0)


class InferenceWorker(SlotWorker):
    """Model inference on the newest windows of every ready track, batched over tracks."""

    name = "edgeaffect-infer"

    def __init__(self, runner, spec: ModelSpec, max_batch: int = 8):
        self.runner, self.spec, self.max_batch = runner, spec, max(1, max_batch)
        dims = [t.shape[0] for t in getattr(runner, "inputs", spec.inputs)]
        self.fixed_batch = int(dims[0]) if dims and isinstance(dims[0], int) else None  # a static-shape export
        if self.fixed_batch:
            self.max_batch = self.fixed_batch
        super().__init__()

    def process(self, req: Request | list[Request]) -> Result:
        """One batched call (in chunks of ``max_batch``) for a request, or for a list of them: several sources
        whose audio windows differ, each window repeated over its own source's faces."""
        reqs = req if isinstance(req, list) else [req]
        t0 = time.perf_counter()
        parts = [self._feeds(r) for r in reqs]
        every = parts[0] if len(parts) == 1 else {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        t1 = time.perf_counter()
        scores = self._infer(every)
        t2 = time.perf_counter()
        frame = reqs[0].frame if len(reqs) == 1 else -1
        by = {k: v for r in reqs for k, v in r.captured_by.items()}
        return Result(frame, min(r.captured for r in reqs), t2, [t for r in reqs for t in r.track_ids], scores,
                      {"prepare": t1 - t0, "infer": t2 - t1}, by)

    def _feeds(self, req: Request) -> dict[str, np.ndarray]:
        every = feeds_from_crops(self.spec, req.crops, req.audio)   # what each input takes, from the spec
        if not every:
            raise ValueError(f"{self.spec.name}: no input the demo can feed in {self.spec.input_names}")
        return every

    def _infer(self, every: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(every.values())))
        scores = []
        for s in range(0, n, self.max_batch):
            feeds = {name: x[s:s + self.max_batch] for name, x in every.items()}
            k = len(next(iter(feeds.values())))
            if self.fixed_batch and k < self.fixed_batch:  # pad a static-batch model's input, drop the padding after
                feeds = {name: np.concatenate([x, np.repeat(x[-1:], self.fixed_batch - k, 0)]) for name, x in feeds.items()}
            scores.append(scores_from_outputs(self.spec, self.runner.infer(feeds))[:k])
        return np.concatenate(scores)


def lower_priority(step: int) -> bool:
    """Raise the calling thread's nice value by ``step`` (Linux; elsewhere nothing happens); True if it did."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
        return True
    except (AttributeError, OSError):
        return False


def merge_requests(parts: list[tuple[int, Request]]) -> Request | list[Request]:
    """The requests of several sources as one batch; track ids become (source, track).

    Requests with audio stay a list (each source has its own audio window); the worker still runs them
    as one batched call, each window repeated over its own source's faces."""
    tagged = [Request(r.frame, r.captured, [(i, t) for t in r.track_ids], r.crops, r.audio, {i: r.captured})
              for i, r in parts]
    if any(r.audio is not None for r in tagged):
        return tagged
    return Request(-1, min(r.captured for r in tagged), [t for r in tagged for t in r.track_ids],
                   np.concatenate([r.crops for r in tagged]), captured_by={i: r.captured for i, r in parts})


def split_result(res: Result) -> dict[int, Result]:
    """A batched result back into one result per source, with the sources' own track ids."""
    rows: dict[int, list[int]] = {}
    for k, (i, _) in enumerate(res.track_ids):
        rows.setdefault(i, []).append(k)
    return {i: Result(res.frame, res.captured_by.get(i, res.captured), res.done, [res.track_ids[k][1] for k in ks],
                      res.scores[ks], res.timings) for i, ks in rows.items()}
