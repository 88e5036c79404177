"""The numpy audio features (edgeaffect/data/audio.py) and librosa.load's resampling (data/media.py) equal
librosa's, which the deploy install no longer has: the comparison runs where librosa is installed (dev/train)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgeaffect.data import audio

needs_librosa = pytest.mark.skipif(importlib.util.find_spec("librosa") is None,
                                   reason="librosa (the reference) is in the train/dev install only")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # librosa: n_fft over a tiny input, empty mels

# (sample rate, seconds, n_mfcc, n_fft, hop): RAVDESS (22.05 kHz, 10 MFCC, librosa's defaults), ERI (25/10 ms
# windows, 40 MFCC), a window shorter than n_fft (the demo's first windows) and a few samples
MFCC_SETTINGS = [(22050, 3.6, 10, 2048, 512), (16000, 4.0, 40, 400, 160), (16000, 0.05, 13, 2048, 512),
                 (16000, 0.0006, 13, 2048, 512)]


def _voice(n: int, seed: int = 0) -> np.ndarray:
    """Noise under a slow envelope, silent in its first quarter (so the dB floor and top_db both act)."""
    rng = np.random.default_rng(seed)
    y = (0.2 * rng.standard_normal(n) * np.abs(np.sin(np.arange(n) / 900.0))).astype(np.float32)
    y[: n // 4] = 0.0
    return y


def _close_to_float32(ours: np.ndarray, ref: np.ndarray) -> None:
    """Within 1e-4, or a float32 step where |MFCC| passes 1000 (librosa's own float32 DCT rounds there)."""
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=2e-7, atol=1e-4)


@needs_librosa
@pytest.mark.parametrize("sr,seconds,n_mfcc,n_fft,hop", MFCC_SETTINGS)
def test_mfcc_equals_librosa(sr, seconds, n_mfcc, n_fft, hop):
    import librosa

    y = _voice(max(1, int(round(seconds * sr))))
    ref = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, n_fft=min(n_fft, max(len(y), 16)), hop_length=hop)
    _close_to_float32(audio.mfcc(y, sr, n_mfcc, n_fft, hop), ref)


@needs_librosa
def test_mfcc_of_silence_and_of_a_loud_tone_equal_librosa():
    import librosa

    t = np.arange(22050 * 2) / 22050
    for y in (np.zeros(22050, np.float32), (0.9 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)):
        _close_to_float32(audio.mfcc(y, 22050, 10), librosa.feature.mfcc(y=y, sr=22050, n_mfcc=10))


@needs_librosa
@pytest.mark.parametrize("scale", ["htk", "slaney"])
def test_mel_power_equals_librosa_with_the_va_settings(scale):
    import librosa

    pre = {"sample_rate": 44100, "n_fft": 1024, "win_length": 882, "hop_length": 441, "n_mels": 64, "mel_scale": scale}
    y = _voice(45599, seed=1)
    ref = librosa.feature.melspectrogram(y=y, sr=44100, n_fft=1024, win_length=882, hop_length=441, n_mels=64,
                                         window="hann", center=True, pad_mode="reflect", power=2.0,
                                         htk=scale == "htk", norm=None)
    ours = audio.mel_power(y, pre)
    assert ours.shape == ref.shape == (64, 104)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7 * ref.max())


@needs_librosa
def test_mel_filters_and_dct_are_librosas_and_scipys():
    import librosa
    import scipy.fft

    np.testing.assert_array_equal(audio.mel_filters(22050, 2048), librosa.filters.mel(sr=22050, n_fft=2048))
    np.testing.assert_allclose(audio.mel_filters(44100, 1024, 64, True, None),
                               librosa.filters.mel(sr=44100, n_fft=1024, n_mels=64, htk=True, norm=None), atol=1e-7)
    x = np.random.default_rng(2).standard_normal((128, 5))
    np.testing.assert_allclose(audio._dct_matrix(20, 128) @ x, scipy.fft.dct(x, axis=0, norm="ortho")[:20], atol=1e-12)


def test_mfcc_follows_the_signal_without_librosa():
    """Independent of librosa: the power spectrum of a pure tone peaks in its bin, and the floor is top_db."""
    sr, n_fft = 16000, 512
    t = np.arange(sr) / sr
    spec = audio.power_spectrogram(np.sin(2 * np.pi * 1000 * t).astype(np.float32), n_fft, 256)
    assert spec.shape == (n_fft // 2 + 1, 1 + sr // 256) and spec.dtype == np.float32
    assert int(np.argmax(spec[:, 10])) == round(1000 * n_fft / sr)
    db = audio.power_to_db(np.array([1e-20, 1e-3, 1.0, 100.0]))
    np.testing.assert_allclose(db, [-60.0, -30.0, 0.0, 20.0])


@needs_librosa
@pytest.mark.parametrize("channels,rate", [(1, 48000), (2, 44100), (1, 22050)])
def test_the_librosa_resampler_is_librosa_load(tmp_path, channels, rate):
    """resample="librosa" (RAVDESS specs) reads and resamples as ``librosa.load(sr=22050)``, without librosa."""
    import librosa
    import soundfile

    from edgeaffect.data.media import read_audio

    y = 0.2 * np.random.default_rng(3).standard_normal((rate // 2, channels))
    wav = tmp_path / "v.wav"
    soundfile.write(str(wav), y, rate, subtype="PCM_16")
    ours = read_audio(wav, 22050, "librosa")
    ref = librosa.load(str(wav), sr=22050, mono=True)[0]
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)


@needs_librosa
def test_the_librosa_resampler_on_a_video_track(tmp_path):
    """A track inside a video is decoded at its own rate (PyAV), averaged and resampled as librosa does."""
    import librosa

    from edgeaffect.data.media import read_audio, read_audio_native, write_video

    frames = np.zeros((4, 64, 64, 3), np.uint8)
    clip = tmp_path / "c.mp4"
    write_video(clip, frames, 8.0, _voice(8000, seed=4), 16000)
    native, rate = read_audio_native(clip)
    ref = librosa.resample(librosa.to_mono(native), orig_sr=rate, target_sr=22050)
    np.testing.assert_array_equal(read_audio(clip, 22050, "librosa"), ref)
