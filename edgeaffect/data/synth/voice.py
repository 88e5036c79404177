"""Voice-like audio whose prosody follows labels.

A glottal-pulse-like harmonic source with a pitch contour, syllable envelope,
vocal-tract-like formant filtering, spectral tilt and breath noise.  It is not
speech, but pitch, energy, rate, jitter and tilt are the prosodic cues that
emotion models read from MFCCs, and they are all controllable here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import MissingDependencyError


@dataclass
class Prosody:
    pitch_hz: float = 140.0      # mean f0
    pitch_range: float = 0.15    # relative f0 excursion across an utterance
    pitch_slope: float = 0.0     # relative f0 change start->end (+ rising, - falling)
    jitter: float = 0.0          # fast relative f0 wobble (anxiety, fear)
    tremolo: float = 0.0         # amplitude wobble depth at ~6 Hz
    energy: float = 0.5          # loudness in [0, 1]
    rate: float = 4.0            # syllables per second
    tilt: float = 0.0            # + brighter (tense), - darker (soft)
    breath: float = 0.05         # aspiration noise ratio
    laugh: float = 0.0           # bursts of short high syllables (amusement)


def synth_voice(duration: float, sr: int, p: Prosody, rng: np.random.Generator,
                onset: float = 0.0) -> np.ndarray:
    """Return mono float32 audio in [-1, 1] of ``duration`` seconds; speech starts at ``onset`` s."""
    try:
        from scipy import signal
    except ImportError:  # the deploy install has no scipy (it came with librosa, now in the train extra)
        raise MissingDependencyError("scipy", "train", "synthetic voices") from None
    n = int(round(duration * sr))
    t = np.arange(n) / sr
    # pitch contour: slow declination/slope + phrase-level wobble + jitter
    rel = np.clip((t - onset) / max(duration - onset, 1e-3), 0, 1)
    f0 = p.pitch_hz * (1 + p.pitch_slope * (rel - 0.5))
    f0 *= 1 + p.pitch_range * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6.28))
    if p.jitter > 0:
        jit = signal.lfilter([1.0], [1.0, -0.97], rng.normal(0, 1, n))
        jit /= np.abs(jit).max() + 1e-9
        f0 *= 1 + 0.12 * p.jitter * jit
    phase = 2 * np.pi * np.cumsum(f0) / sr
    # harmonic source with spectral tilt (harmonic k scaled by k^-(1.2 - tilt))
    src = np.zeros(n)
    for k in range(1, 25):
        amp = k ** -(1.3 - 0.8 * p.tilt)
        mask = (k * f0) < sr / 2 - 200
        src += amp * np.sin(k * phase) * mask
    src += p.breath * rng.normal(0, 1, n) * 3
    # formants: random vowel per syllable approximated by a fixed bank of resonators
    out = np.zeros(n)
    for fc, bw in ((rng.uniform(500, 800), 90), (rng.uniform(1100, 1800), 120), (rng.uniform(2300, 2900), 170)):
        b, a = signal.iirpeak(fc / (sr / 2), fc / bw)
        out += signal.lfilter(b, a, src)
    # syllable envelope: raised-cosine bumps at the syllable rate, with pauses
    env = np.zeros(n)
    rate = max(p.rate, 0.5)
    pos = onset
    while pos < duration:
        dur = rng.uniform(0.6, 1.0) / rate
        i0, i1 = int(pos * sr), min(n, int((pos + dur) * sr))
        if i1 > i0:
            env[i0:i1] = np.sin(np.linspace(0, np.pi, i1 - i0)) ** 1.5 * rng.uniform(0.7, 1.0)
        pos += dur + (rng.uniform(0.2, 0.6) if rng.random() < 0.15 else 0.02)
    if p.laugh > 0:
        for _ in range(int(3 * p.laugh * duration)):
            c0 = rng.uniform(onset, duration)
            i0 = int(c0 * sr)
            ln = int(0.08 * sr)
            i1 = min(n, i0 + ln)
            burst = np.sin(np.linspace(0, np.pi, i1 - i0)) * 1.4 * p.laugh
            env[i0:i1] = np.maximum(env[i0:i1], burst)
            out[i0:i1] += 0.8 * p.laugh * np.sin(3 * phase[i0:i1]) * np.abs(out).max()
    if p.tremolo > 0:
        env *= 1 - p.tremolo * 0.5 * (1 + np.sin(2 * np.pi * 6.0 * t))
    y = out * env
    y /= np.abs(y).max() + 1e-9
    y *= 0.1 + 0.8 * np.clip(p.energy, 0, 1)
    y += rng.normal(0, 0.004, n)  # room noise
    return np.clip(y, -1, 1).astype(np.float32)
