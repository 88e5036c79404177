"""Reading and writing video and audio as the datasets ship them.

Video frames are decoded with OpenCV; audio tracks (inside mp4/avi/mkv, or as
wav) with PyAV, which bundles FFmpeg, so AAC, MP3 and PCM all read the same.
Writing uses PyAV too: H.264 video with an AAC track in an mp4, like the
distributed datasets.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError, MissingDependencyError
from ..fileio import atomic_path
from ..lazy import lazy_import

cv2 = lazy_import("cv2", "")
sf = lazy_import("soundfile", "")
soundfile = lazy_import("soundfile", "")
soxr = lazy_import("soxr", "")

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac"}


def open_video(path: str | os.PathLike):
    """An OpenCV capture of a file that decodes on one thread.

    FFmpeg's frame-threaded H.264 decoder conceals damaged frames differently from run
    to run, so a damaged file would give different training frames each time; one
    thread gives the same frames every time (preprocessing parallelises over files).
    """
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])


def video_info(path: str | os.PathLike) -> tuple[int, float, int, int]:
    """(frame count, fps, width, height) as the container reports them (count may be an estimate)."""
    cap = open_video(path)
    try:
        if not cap.isOpened():
            raise DataError(f"cannot open video {path}: unreadable or not a video")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        return n, fps, w, h
    finally:
        cap.release()


def uniform_indices(n_frames: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``n_frames`` (segment centres; repeats if short)."""
    if n_frames <= 0:
        raise ValueError("no frames")
    return np.minimum(((np.arange(count) + 0.5) * n_frames / count).astype(int), n_frames - 1)


MAX_TRAILING_BAD = 50  # undecodable reads in a row past the container's frame count that end a file


def decode_steps(grab: Callable[[], bool], frame_count: int | None,
                 max_bad: int = MAX_TRAILING_BAD) -> Iterator[bool]:
    """One bool per frame slot of a file, read sequentially: decoded (``True``) or undecodable.

    OpenCV's ``grab()`` fails alike on a damaged frame and at the end of the file.
    Failures are held back: a frame that decodes after them makes them damaged
    frames (yielded as ``False``, to skip and count); a run that nothing decodes
    after is the end (a truncated or damaged tail).  Reading goes on through any
    run of failures up to the container's ``frame_count``; past it, or without
    one, ``max_bad`` failures in a row end the file, so a reader never loops forever.
    """
    slot = held = 0
    while True:
        if grab():
            yield from (False for _ in range(held))
            held = 0
            yield True
        else:
            held += 1
            if (not frame_count or slot >= frame_count) and held >= max_bad:
                return
        slot += 1


def read_frames(path: str | os.PathLike, count: int | None = None,
                indices: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
    """Decode BGR uint8 frames [N, H, W, 3] and the fps.

    With ``count``, ``count`` frames are sampled uniformly over the clip; with
    ``indices``, exactly those frames.  Frames are decoded sequentially and only
    the wanted ones are kept, so long clips do not fill memory.  A damaged frame
    is stepped over (:func:`decode_steps`); a wanted one takes the next frame that
    decodes.  A container that over-reports its length (truncated file) is handled
    by re-sampling over the frames that really decoded.
    """
    n_reported, fps, _, _ = video_info(path)
    if indices is None and count is not None and n_reported > 0:
        indices = uniform_indices(n_reported, count)
    wanted = None if indices is None else {int(i) for i in indices}
    frames, slots = _decode(path, n_reported, wanted)
    if not frames and (wanted is None or not slots):
        raise DataError(f"no frame could be decoded from {path}: unreadable or truncated video")
    if wanted is None:
        arr = np.stack([frames[j] for j in sorted(frames)])
        if count is not None:
            arr = arr[uniform_indices(len(arr), count)]
        return arr, fps
    if len(frames) < len(wanted):
        # The container promised more frames than it holds: sample what exists.
        if count is not None:
            return read_frames(path, indices=uniform_indices(slots, count))
        missing = sorted(wanted - set(frames))
        raise DataError(f"{path}: frames {missing[:3]}... are beyond the {slots} decodable frames")
    return np.stack([frames[int(j)] for j in indices]), fps


def _decode(path, frame_count: int, wanted: set[int] | None) -> tuple[dict[int, np.ndarray], int]:
    """({slot: frame} for the ``wanted`` slots (``None``: every decodable one), frame slots up to the last decoded)."""
    cap = open_video(path)
    frames: dict[int, np.ndarray] = {}
    waiting: list[int] = []   # wanted slots that did not decode: the next decoded frame stands in
    last = None if wanted is None else max(wanted, default=-1)
    slots = 0
    try:
        for i, decoded in enumerate(decode_steps(cap.grab, frame_count or None)):
            if last is not None and i > last and not waiting:
                break
            want = wanted is None or i in wanted
            frame = cap.retrieve()[1] if decoded and (want or waiting) else None
            if decoded:
                slots = i + 1
            if frame is None:
                if want and wanted is not None:
                    waiting.append(i)
                continue
            for j in waiting + ([i] if want else []):
                frames[j] = frame
            waiting = []
    finally:
        cap.release()
    return frames, slots


RESAMPLERS = ("pyav", "librosa")


def read_audio(path: str | os.PathLike, sr: int, resample: str = "pyav") -> np.ndarray:
    """Mono float32 audio at ``sr`` Hz from a media file's first audio stream.

    ``resample``: ``pyav`` (FFmpeg's resampler) or ``librosa`` (``librosa.load``'s, what the RAVDESS
    reference uses; a track inside a video is decoded at its own rate, averaged and resampled the same way).
    The spec's ``preprocessing["resample"]`` names the one a model was trained with.
    Raises :class:`DataError` if the file has no audio stream or cannot be read.
    """
    if resample not in RESAMPLERS:
        raise DataError(f"unknown audio resampler {resample!r} (choose {' or '.join(RESAMPLERS)})")
    if resample == "librosa":
        return _read_audio_librosa(path, sr)
    av = pyav("reading a video's audio track")

    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises a family of FFmpeg errors
        raise DataError(f"cannot open {path} for audio: {exc}") from None
    try:
        streams = container.streams.audio
        if not streams:
            raise DataError(f"{path} has no audio track")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks = []
        try:
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError:
            pass  # truncated stream: keep what decoded
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    finally:
        container.close()
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks).astype(np.float32)


def _read_audio_librosa(path: str | os.PathLike, sr: int) -> np.ndarray:
    """``librosa.load(path, sr=sr, mono=True)`` without librosa: soundfile for WAV/FLAC/OGG (PyAV for the rest),
    channels averaged, then soxr's HQ resampler cut or padded to ``ceil(n * sr / native)`` samples as librosa's
    ``resample(res_type="soxr_hq")`` does; tests/test_audio_features.py holds it equal to librosa."""
    if Path(path).suffix.lower() in (".wav", ".flac", ".ogg"):
        try:
            y, native = soundfile.read(str(path), dtype="float32", always_2d=True)
        except RuntimeError as exc:   # soundfile's LibsndfileError
            raise DataError(f"cannot read audio {path}: {exc}") from None
        y = y.T
    else:
        y, native = read_audio_native(path)
    if y.size == 0:
        return np.zeros(0, np.float32)
    y = np.mean(y, axis=0) if y.shape[0] > 1 else y[0]
    if native == sr:
        return y.astype(np.float32)
    out = soxr.resample(y, native, sr, quality="soxr_hq")
    n = int(np.ceil(len(y) * float(sr) / native))
    out = out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))
    return np.asarray(out, np.float32)


def pyav(purpose: str = "reading a video's audio track or writing H.264 video"):
    """PyAV, or the one line naming the extra that brings it: the edge install leaves it out (104 MB of
    FFmpeg), and only audio-visual models and video output need it (OpenCV cannot read audio tracks)."""
    try:
        import av
    except ImportError:
        raise MissingDependencyError("av", "media", purpose) from None
    return av


def has_audio(path: str | os.PathLike) -> bool:
    av = pyav("reading a video's audio track")

    try:
        with av.open(str(path)) as c:
            return len(c.streams.audio) > 0
    except Exception:
        return False


def write_wav(path: str | os.PathLike, audio: np.ndarray, sr: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, np.float32), sr, subtype="PCM_16")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float,
                audio: np.ndarray | None = None, sr: int = 16000, crf: int = 23) -> None:
    """Write BGR uint8 frames [N, H, W, 3] as H.264 mp4 (+ AAC audio), atomically.

    The encoder runs on one thread so the same frames give the same bytes on any
    machine and under any load (synthetic datasets are checked byte for byte);
    callers that write many clips parallelise across processes instead.
    """
    av = pyav("writing H.264 video")

    frames = np.asarray(frames)
    n, h, w, _ = frames.shape
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as out:
            vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            vs.width, vs.height = w - w % 2, h - h % 2
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(crf), "preset": "veryfast"}
            vs.thread_count = 1
            as_ = None
            if audio is not None:
                as_ = out.add_stream("aac", rate=sr)
                as_.layout = "mono"
            for f in frames:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: vs.height, : vs.width]), format="bgr24")
                for pkt in vs.encode(vf):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
            if as_ is not None:
                pcm = np.asarray(audio, np.float32).reshape(1, -1)
                step = 1024
                for s0 in range(0, pcm.shape[1], step):
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, s0:s0 + step]), format="fltp", layout="mono")
                    af.sample_rate = sr
                    af.pts = s0
                    for pkt in as_.encode(af):
                        out.mux(pkt)
                for pkt in as_.encode():
                    out.mux(pkt)


def find_sibling_audio(video: Path) -> Path | None:
    """A wav (or other audio file) with the same stem beside the video, if any."""
    for suf in (".wav", ".WAV", ".flac", ".mp3", ".m4a"):
        cand = video.with_suffix(suf)
        if cand.exists():
            return cand
    return None


def read_audio_native(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(float32 [channels, samples], sample rate) of a media file's first audio stream, not resampled."""
    av = pyav("reading a video's audio track")

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise DataError(f"cannot open {path} for audio: {exc}") from None
    try:
        if not container.streams.audio:
            raise DataError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        resampler = av.AudioResampler(format="fltp", rate=rate)  # planar float, layout and rate kept
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks += [out.to_ndarray() for out in resampler.resample(frame)]
        except av.error.FFmpegError:
            pass  # truncated stream: keep what decoded
        chunks += [out.to_ndarray() for out in resampler.resample(None)]
    finally:
        container.close()
    return (np.concatenate(chunks, axis=1).astype(np.float32) if chunks else np.zeros((1, 0), np.float32)), rate
