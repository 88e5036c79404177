"""Fixed-size ring buffers: T face crops per track at the model's fps, and the last seconds of audio.

Memory never grows with the length of the stream: a crop is kept only when
``1/fps`` of media time has passed since the last one, and the oldest falls out.
"""
from __future__ import annotations

import numpy as np


class FrameRing:
    """The newest ``size`` crops sampled at ``fps`` (by media time, so decode speed does not matter).

    ``phases`` > 1 keeps crops ``phases`` times as often and a window takes every ``phases``-th of them, ending at
    the newest: each window still spans the model's clip at its own fps, but a new one is ready ``phases`` times
    as often, so a temporal model (ERI samples 8 frames a second) can predict more often than it samples."""

    def __init__(self, size: int, fps: float, phases: int = 1, frame_period: float = 0.0):
        """``frame_period``: the source's frame interval (1/its fps) where known.  Crops are then kept on a fixed
        grid of slots ``1/(fps*phases)`` apart, each slot taking the frame nearest it (within half a frame), so
        a 30 fps camera feeds 8 fps x 2 phases 16 crops a second, 1/16 s apart on average; keeping the first
        frame a full period after the last kept one took every 2nd frame: 15 a second, 1/15 s apart."""
        self.size, self.phases = max(1, int(size)), max(1, int(phases))
        self.period = 1.0 / (fps * self.phases) if fps and fps > 0 else 0.0
        self._slack = (frame_period / 2 if frame_period > 0 else 0.0) + self.period * 0.001
        self._keep = (self.size - 1) * self.phases + 1
        self._items: list[np.ndarray] = []
        self._last_t: float | None = None
        self._next: float | None = None      # media time of the grid's next slot
        self.pushed = 0

    def due(self, t: float) -> bool:
        """Whether a crop taken at media time ``t`` would be kept (lets callers skip cropping)."""
        return (self._next is None or self.period == 0.0 or t >= self._next - self._slack
                or t < self._last_t)

    def push(self, crop: np.ndarray, t: float) -> bool:
        if not self.due(t):
            return False
        self._items.append(crop)
        if len(self._items) > self._keep:
            del self._items[0]
        # on the grid while frames come one by one; after a gap (dropped frames, a file looping) it starts again here
        on_grid = self._next is not None and self._last_t is not None and t >= self._last_t \
            and abs(t - self._next) <= 1.5 * self._slack   # (1.5: a live camera's timestamps jitter)
        self._next = (self._next if on_grid else t) + self.period
        self._last_t = t
        self.pushed += 1
        return True

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ready(self) -> bool:
        return len(self._items) > 0

    def window(self) -> np.ndarray:
        """[size, h, w, 3]: every ``phases``-th crop back from the newest, the oldest repeated in front while
        the ring is filling."""
        items = self._items[::-1][::self.phases][::-1]
        if len(items) < self.size:
            items = [items[0]] * (self.size - len(items)) + items
        return np.stack(items)


class AudioRing:
    """The newest ``seconds`` of mono samples."""

    def __init__(self, seconds: float, sample_rate: int):
        self.sr = int(sample_rate)
        self.buf = np.zeros(max(1, int(round(seconds * self.sr))), np.float32)
        self.filled = 0

    def push(self, samples: np.ndarray) -> None:
        s = np.asarray(samples, np.float32).reshape(-1)
        n = len(self.buf)
        if len(s) >= n:
            self.buf[:] = s[-n:]
        elif len(s):
            self.buf[:-len(s)] = self.buf[len(s):]
            self.buf[-len(s):] = s
        self.filled = min(n, self.filled + len(s))

    def window(self) -> np.ndarray:
        return self.buf.copy()
