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


def mel_power(y: np.ndarray, pre) -> np.ndarray:
    """Power mel spectrogram [n_mels, columns] float32 with the VA reference's torchaudio settings
    (``pre``: sample_rate, n_fft, win_length, hop_length, n_mels, mel_scale; Hann, centred reflect padding)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(y, np.float32), sr=pre["sample_rate"], n_fft=pre["n_fft"], win_length=pre["win_length"],
        hop_length=pre["hop_length"], n_mels=pre["n_mels"], window="hann", center=True,
        pad_mode="reflect", power=2.0, htk=pre["mel_scale"] == "htk", norm=None)
    return mel.astype(np.float32)
