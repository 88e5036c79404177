"""Audio features: fixed-length windows, power mel spectrograms and MFCCs in plain numpy.

The features are librosa's (``librosa.feature.mfcc`` / ``melspectrogram`` with the settings each model
records), written out here so the deploy install needs no librosa and with it no numba, llvmlite, scipy or
scikit-learn: a centred STFT of a periodic Hann window, librosa's mel filterbank (Slaney or HTK scale,
``norm="slaney"`` or none), ``power_to_db(ref=1.0, amin=1e-10, top_db=80)`` and an orthonormal DCT-II.
tests/test_audio_features.py holds them equal to librosa (within 1e-4) where librosa is installed.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def fit_length(y: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Centre-crop or zero-pad (at the end) to ``n`` samples; returns (audio, samples padded)."""
    if len(y) >= n:
        start = (len(y) - n) // 2
        return y[start:start + n], 0
    return np.pad(y, (0, n - len(y))), n - len(y)


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0   # Slaney: linear below 1 kHz, log above
    mels = f / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, mels)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=16)
def mel_filters(sr: int, n_fft: int, n_mels: int = 128, htk: bool = False, norm: str | None = "slaney") -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] float32 triangles of ``librosa.filters.mel`` (fmin 0, fmax sr/2)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0, htk), _hz_to_mel(sr / 2.0, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)   # librosa rounds here ...
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]  # ... and again after scaling
    elif norm is not None:
        raise ValueError(f"mel norm {norm!r}: only 'slaney' or None")
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=16)
def _window(n_fft: int, win_length: int) -> np.ndarray:
    """Periodic Hann of ``win_length`` centred in ``n_fft`` zeros (librosa's ``get_window`` + ``pad_center``)."""
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft)
    out[left:left + win_length] = w
    out.setflags(write=False)
    return out


def power_spectrogram(y: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None,
                      pad_mode: str = "constant") -> np.ndarray:
    """[1 + n_fft // 2, frames] float32 ``|STFT|**2`` with centred frames (``n_fft // 2`` padding each side)."""
    y = np.asarray(y, np.float32)
    y = np.pad(y, n_fft // 2, mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop_length]
    spec = np.fft.rfft(frames * _window(n_fft, win_length or n_fft), axis=-1).astype(np.complex64)
    return (np.abs(spec) ** 2).T


def power_to_db(s: np.ndarray, amin: float = 1e-10, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(s, ref=1.0, amin, top_db)``: dB, floored ``top_db`` under the maximum."""
    log_spec = 10.0 * np.log10(np.maximum(amin, s))
    return np.maximum(log_spec, log_spec.max() - top_db)


@lru_cache(maxsize=16)
def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The first ``n_out`` rows of the orthonormal DCT-II over ``n_in`` points (scipy's ``norm="ortho"``)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    m.setflags(write=False)
    return m


def mfcc(y: np.ndarray, sr: int, n_mfcc: int, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """librosa's MFCC [n_mfcc, frames] float32 (center=True, 128 Slaney mels, dB with top_db 80, DCT-II ortho)."""
    n_fft = min(n_fft, max(len(y), 16))
    mel = mel_filters(int(sr), int(n_fft), 128, False, "slaney") @ power_spectrogram(y, n_fft, hop_length)
    return (_dct_matrix(int(n_mfcc), mel.shape[0]) @ power_to_db(mel)).astype(np.float32)


def mel_power(y: np.ndarray, pre) -> np.ndarray:
    """Power mel spectrogram [n_mels, columns] float32 with the VA reference's torchaudio settings
    (``pre``: sample_rate, n_fft, win_length, hop_length, n_mels, mel_scale; Hann, centred reflect padding)."""
    spec = power_spectrogram(y, int(pre["n_fft"]), int(pre["hop_length"]), int(pre["win_length"]), "reflect")
    fb = mel_filters(int(pre["sample_rate"]), int(pre["n_fft"]), int(pre["n_mels"]), pre["mel_scale"] == "htk", None)
    return (fb @ spec).astype(np.float32)
