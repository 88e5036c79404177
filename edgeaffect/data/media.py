"""Reading and writing video and audio as the datasets ship them.

Video frames are decoded with OpenCV; audio tracks (inside mp4/avi/mkv, or as
wav) with PyAV, which bundles FFmpeg, so AAC, MP3 and PCM all read the same.
Writing uses PyAV too: H.264 video with an AAC track in an mp4, like the
distributed datasets.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac"}


def video_info(path: str | os.PathLike) -> tuple[int, float, int, int]:
    """(frame count, fps, width, height) as the container reports them (count may be an estimate)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
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


def read_frames(path: str | os.PathLike, count: int | None = None,
                indices: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
    """Decode BGR uint8 frames [N, H, W, 3] and the fps.

    With ``count``, ``count`` frames are sampled uniformly over the clip; with
    ``indices``, exactly those frames.  Frames are decoded sequentially and only
    the wanted ones are kept, so long clips do not fill memory.  A container
    that over-reports its length (truncated file) is handled by re-sampling
    over the frames that really decoded.
    """
    import cv2

    n_reported, fps, _, _ = video_info(path)
    if indices is None and count is not None and n_reported > 0:
        indices = uniform_indices(n_reported, count)
    cap = cv2.VideoCapture(str(path))
    frames: dict[int, np.ndarray] = {}
    all_frames: list[np.ndarray] = []
    keep_all = indices is None
    wanted = set(int(i) for i in indices) if indices is not None else set()
    last = max(wanted) if wanted else -1
    i = 0
    try:
        while True:
            if not keep_all and i > last:
                break
            ok = cap.grab()
            if not ok:
                break
            if keep_all or i in wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                if keep_all:
                    all_frames.append(frame)
                else:
                    frames[i] = frame
            i += 1
    finally:
        cap.release()
    decoded = i
    if decoded == 0:
        raise DataError(f"no frame could be decoded from {path}: unreadable or truncated video")
    if keep_all:
        arr = np.stack(all_frames)
        if count is not None:
            arr = arr[uniform_indices(len(arr), count)]
        return arr, fps
    if len(frames) < len(wanted):
        # The container promised more frames than it holds: sample what exists.
        if count is not None:
            return read_frames(path, indices=uniform_indices(decoded, count))
        missing = sorted(wanted - set(frames))
        raise DataError(f"{path}: frames {missing[:3]}... are beyond the {decoded} decodable frames")
    order = [int(j) for j in indices]
    return np.stack([frames[j] for j in order]), fps


def read_audio(path: str | os.PathLike, sr: int) -> np.ndarray:
    """Mono float32 audio at ``sr`` Hz from a media file's first audio stream.

    Raises :class:`DataError` if the file has no audio stream or cannot be read.
    """
    import av

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


def has_audio(path: str | os.PathLike) -> bool:
    import av

    try:
        with av.open(str(path)) as c:
            return len(c.streams.audio) > 0
    except Exception:
        return False


def write_wav(path: str | os.PathLike, audio: np.ndarray, sr: int) -> None:
    import soundfile as sf

    from ..fileio import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, np.float32), sr, subtype="PCM_16")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float,
                audio: np.ndarray | None = None, sr: int = 16000, crf: int = 23) -> None:
    """Write BGR uint8 frames [N, H, W, 3] as H.264 mp4 (+ AAC audio), atomically."""
    import av
    from fractions import Fraction

    from ..fileio import atomic_path

    frames = np.asarray(frames)
    n, h, w, _ = frames.shape
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as out:
            vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            vs.width, vs.height = w - w % 2, h - h % 2
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(crf), "preset": "veryfast"}
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
