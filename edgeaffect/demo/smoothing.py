"""Temporal smoothing of predictions so labels do not flicker from one window to the next."""
from __future__ import annotations

import numpy as np


class EMASmoother:
    """Per-track exponential moving average of scores: ``s = a * s + (1 - a) * new`` (a = 0: off)."""

    def __init__(self, alpha: float = 0.6):
        if not 0.0 <= alpha < 1.0:
            raise ValueError("smoothing must be in [0, 1)")
        self.alpha = alpha
        self.state: dict[int, np.ndarray] = {}

    def update(self, track: int, scores: np.ndarray) -> np.ndarray:
        prev = self.state.get(track)
        s = scores if prev is None else self.alpha * prev + (1.0 - self.alpha) * scores
        self.state[track] = s
        return s

    def forget(self, keep: set[int]) -> None:
        for k in [k for k in self.state if k not in keep]:
            del self.state[k]
