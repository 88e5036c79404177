"""Audio features: fixed-length windows and MFCCs (librosa)."""
from __future__ import annotations

import numpy as np


def fit_length(y: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Centre-crop or zero-pad (at the end) to ``n`` samples; returns (audio, samples padded)."""
    if len(y) >= n:
        start = (len(y) - n) // 2
        return y[start:start + n], 0
    return np.pad(y, (0, n - len(y))), n - len(y)


def mfcc(y: np.ndarray, sr: int, n_mfcc: int, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """librosa MFCC [n_mfcc, frames] as float32 (center=True, librosa's other defaults)."""
    import librosa

    n_fft = min(n_fft, max(len(y), 16))
    return librosa.feature.mfcc(y=np.asarray(y, np.float32), sr=sr, n_mfcc=n_mfcc, n_fft=n_fft,
                                hop_length=hop_length).astype(np.float32)
