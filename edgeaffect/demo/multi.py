"""Several sources in one demo: one model, one inference worker, per-source tracking and outputs.

One loop takes turns over the sources: each round every source that has a frame
advances it (decode, detect/track, crop), the ready faces of all of them go to
the model in one batched call, and each source's frame is annotated and written
to its own sinks.  Live sources are read on their threads and polled without
waiting, and the loop sleeps only when none of them has a frame (at most
0.2 s), so one slow or lost camera never holds the others back.  Files played
``--realtime`` are read the same way, each on its own thread, so decoding uses
every core (OpenCV, like ONNX Runtime and OpenVINO, releases the GIL) and a
busy box drops frames, counted per source, as it would a camera's.  A file that
ends leaves the round; the demo ends when every source has.

The loop drives each source through :class:`.pipeline.Demo`'s public steps
(open, advance, request, apply, emit, close).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import EdgeAffectError
from .pipeline import Demo, Stats
from .sources import END
from .worker import InferenceWorker, merge_requests, split_result


@dataclass
class MultiStats:
    """Per-source :class:`Stats`, the shared model's calls, and totals over all sources."""

    sources: list[Stats]
    names: list[str]
    calls: int = 0                   # inference calls (each may cover faces of several sources)
    call_stages: dict = field(default_factory=lambda: {"infer": [], "prepare": []})
    superseded: int = 0
    wall: float = 0.0

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sources)

    def total(self) -> Stats:
        """All sources as one run: counters summed, timings pooled, inference timings per call."""
        t = Stats(wall=self.wall, inferences=self.calls, superseded=self.superseded)
        for s in self.sources:
            for name, v in s.stages.items():
                if name not in self.call_stages:
                    t.stages[name].extend(v)
            t.latency += s.latency
            t.pred_age += s.pred_age
            t.budget = max(t.budget, s.budget)
            for c in ("frames", "corrupt", "dropped_frames", "skipped", "reconnects", "faces", "detect_ran", "fresh"):
                setattr(t, c, getattr(t, c) + getattr(s, c))
        for name, v in self.call_stages.items():
            t.stages[name].extend(v)
        return t

    def summary(self) -> dict:
        out = self.total().summary()
        out["sources"] = [{"source": name, **s.summary()} for name, s in zip(self.names, self.sources)]
        return out


class MultiDemo:
    """Drives one :class:`Demo` per source (its own tracker, smoother, sinks and stats) over a shared worker."""

    linger = 0.004     # seconds an idle model's call may wait for the other sources' frames (:meth:`_linger`)

    def __init__(self, demos: Sequence[Demo], names: Sequence[str]):
        self.demos, self.names = list(demos), list(names)
        self._turn = 0     # rounds so far: where the next round starts
        self.cfg = self.demos[0].cfg
        self.stats = MultiStats([d.stats for d in self.demos], self.names)

    @property
    def sinks(self) -> list:
        return [s for d in self.demos for s in d.sinks]

    def run(self, sources: Sequence, stop: threading.Event | None = None) -> MultiStats:
        stop = stop or threading.Event()
        wake = threading.Event()
        first = self.demos[0]
        worker = InferenceWorker(first.runner, first.spec, first.cfg.max_batch * len(self.demos))
        lps: list = []
        start = time.perf_counter()
        try:
            first.warm_up(worker)
            for d, src, name in zip(self.demos, sources, self.names):
                try:
                    lps.append(d.open(src, stop, worker=worker, wake=wake))
                except EdgeAffectError as exc:
                    raise EdgeAffectError(f"source {d.source_id} ({name}): {exc}") from exc
            start = time.perf_counter()
            self._loop(lps, worker, stop, wake)
        finally:
            stop.set()
            worker.close()
            self._collect(worker)
            for d, lp in zip(self.demos, lps):
                d.close(lp, stop)
            self.stats.superseded, self.stats.wall = worker.dropped, time.perf_counter() - start
        return self.stats

    def _loop(self, lps: list, worker: InferenceWorker, stop: threading.Event, wake: threading.Event) -> None:
        """Rounds until every source ended: advance those with a frame, hand the model every window not
        handed over yet (this round's or one that found the model busy before), apply, emit.  A round
        starts when a frame comes or the model finishes (``wake``), so a window never waits for its
        source's next frame to be handed over."""
        active = list(range(len(self.demos)))
        latest: dict = {}                # each source's newest advanced frame (its windows may still be pending)
        worker.on_done = wake.set
        while active and not stop.is_set():
            wake.clear()
            frames = self._advance(active, lps, stop)
            for i in [i for i in latest if i not in active]:
                del latest[i]
            latest.update(frames)
            linger = self._submit(lps, worker, latest, frames)
            self._collect(worker)
            if not frames:
                if active and all(lps[i].threaded for i in active):
                    # every remaining source is read on its thread and none had a frame: wait for one, or for
                    # the end of a held call's linger
                    wake.wait(0.2 if linger is None else linger)
                continue
            for i, frame in frames.items():
                if self.demos[i].emit(lps[i], frame):
                    stop.set()

    def _advance(self, active: list, lps: list, stop: threading.Event) -> dict:
        """One frame of every active source that has one; a source at its end leaves ``active``.  Each round
        starts one source further on, so no source is always the last one cropped before the model's call."""
        frames = {}
        k = self._turn % len(active)
        self._turn += 1
        for i in active[k:] + active[:k]:
            d, lp = self.demos[i], lps[i]
            d.check(lp)
            frame = END if d.limit_reached() else d.advance(lp, stop)
            if frame is END:
                active.remove(i)
            elif frame is not None:
                frames[i] = frame
        return frames

    def _submit(self, lps: list, worker: InferenceWorker, latest: dict, frames: dict) -> float | None:
        """The windows not handed over yet, of every source, as one request; never waits, except in sync
        mode.  A busy model counts a skip for the sources whose new frame it could not take.  Returns the
        seconds left of a linger (the call held for the other sources' frames), else None."""
        due = [i for i, f in latest.items() if self.demos[i].has_fresh(lps[i], f)]
        if not due:
            return None
        if worker.busy:
            for i in due:
                self.demos[i].stats.skipped += i in frames
            return None
        linger = self._linger(lps, latest, due)
        if linger > 0:
            return linger
        worker.submit(merge_requests([(i, self.demos[i].request(lps[i], latest[i])) for i in due]))
        if self.cfg.sync:
            worker.wait_idle(timeout=60.0)
        return None

    def _linger(self, lps: list, latest: dict, due: list) -> float:
        """Seconds to hold an idle model's call for more sources' frames: while fewer than half of the sources
        with faces have a new window and the oldest of them is under :attr:`linger` old.  Cameras deliver
        their frames within a few milliseconds of each other; a call for the first one or two alone costs
        the fixed part of a model call again and again (16 sources: 3-4 calls a frame instead of 1-2)."""
        if not self.linger or self.cfg.sync or not all(lps[i].threaded for i in latest):
            return 0.0
        with_faces = sum(1 for i, f in latest.items() if f.ready)
        if len(due) * 2 >= with_faces:
            return 0.0
        return max(0.0, self.linger - (time.perf_counter() - min(latest[i].captured for i in due)))

    def _collect(self, worker: InferenceWorker) -> None:
        for res in worker.poll():
            self.stats.calls += 1
            for name in self.stats.call_stages:
                self.stats.call_stages[name].append(res.timings[name])
            for i, part in split_result(res).items():
                self.demos[i].apply(part)
