"""Interleaved timing: the one way edgeaffect compares variants on a noisy machine.

Every round runs each variant in turn for a slice of the budget (reversing the order every other round, so no
variant always goes first); a machine whose speed drifts from minute to minute then slows every variant alike,
and their ratio holds.  ``edgeaffect bench`` times its rows with it, and ``--runtime auto`` its candidates.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence


def time_interleaved(variants: Sequence, budget_s: float, rounds: int, warmup: int = 3,
                     tick: Callable[[], None] | None = None) -> None:
    """Warm each variant up, then run ``rounds`` rounds of ``budget_s / rounds`` seconds per variant.

    A variant has ``runtime`` (with ``infer(feeds)``), ``feeds`` and ``times`` (a list each call's seconds are
    appended to)."""
    for v in variants:
        for _ in range(warmup):
            v.runtime.infer(v.feeds)
    slice_s = budget_s / rounds
    for r in range(rounds):
        for v in variants if r % 2 == 0 else list(reversed(variants)):
            end = time.perf_counter() + slice_s
            while True:
                t0 = time.perf_counter()
                v.runtime.infer(v.feeds)
                t1 = time.perf_counter()
                v.times.append(t1 - t0)
                if t1 >= end:
                    break
            if tick:
                tick()
