"""Frame sources: camera index, video file, RTSP/HTTP stream, image folder; plus the file's audio track.

A source's ``read()`` returns a :class:`Read` whose ``status`` separates a good
frame, a corrupt one (skip and count), the end of a file, and a lost stream
(reconnect).  :class:`Reconnecting` turns "lost" into reopen attempts with
exponential backoff and reports them, so a dropped camera or RTSP feed never
ends the demo by itself.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..data.media import decode_steps, read_audio
from ..errors import EdgeAffectError
from ..lazy import lazy_import

cv2 = lazy_import("cv2", "")

log = logging.getLogger("edgeaffect.demo")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
OK, CORRUPT, END, LOST = "ok", "corrupt", "end", "lost"


@dataclass
class Read:
    status: str
    image: np.ndarray | None = None
    time: float | None = None  # media time in seconds (None: the reader uses wall time)


class Source(Protocol):
    fps: float
    live: bool
    name: str

    def open(self) -> None: ...
    def read(self) -> Read: ...
    def close(self) -> None: ...


def valid_frame(img) -> bool:
    return (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            and img.shape[0] >= 16 and img.shape[1] >= 16)


class CaptureSource:
    """OpenCV VideoCapture over a camera index, a file or a URL (rtsp://, http://).

    A failed read of a camera or stream is a lost connection; of a file, either a
    damaged frame (counted as corrupt, reading goes on) or the real end, which
    :func:`~edgeaffect.data.media.decode_steps` tells apart.
    """

    def __init__(self, target: int | str, loop: bool = False, decode_threads: int | None = None):
        """``decode_threads``: FFmpeg's decoding threads for a file (None: its default, one per core); one
        per file when many files are decoded side by side on their own threads (15 % less CPU per frame)."""
        self.target, self.decode_threads = target, decode_threads
        self.live = isinstance(target, int) or "://" in str(target)
        self.loop = loop and not self.live
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self.fps = 30.0
        self._cap = None
        self._steps = None
        self._index = 0      # frame slots of this pass over the file, damaged ones included
        self._decoded = 0    # frames of this pass that decoded
        self._offset = 0.0
        self.frame_count: int | None = None

    def open(self) -> None:
        if self.decode_threads and not self.live:
            self._cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, self.decode_threads])
        else:
            self._cap = cv2.VideoCapture(self.target)
        if not self._cap.isOpened():
            self._cap.release()
            self._cap = None
            raise EdgeAffectError(f"cannot open {self.name}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        self.frame_count = None if self.live else int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
        self._steps = None if self.live else decode_steps(self._cap.grab, self.frame_count)

    def read(self) -> Read:
        if self._cap is None:
            return Read(LOST)
        if self.live:
            ok, img = self._cap.read()
            return Read(OK if valid_frame(img) else CORRUPT, img) if ok else Read(LOST)
        decoded = next(self._steps, None)
        if decoded is None:
            if self.loop and self._decoded > 0:
                self._cap.release()
                self._offset += self._index / self.fps
                self._index = self._decoded = 0
                self.open()
                return self.read()
            return Read(END)
        t = self._offset + self._index / self.fps
        self._index += 1
        img = self._cap.retrieve()[1] if decoded else None
        self._decoded += img is not None
        return Read(OK if valid_frame(img) else CORRUPT, img, t)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._steps = None


class FolderSource:
    """Sorted images in a folder played at ``fps``; unreadable files count as corrupt frames."""

    live = False

    def __init__(self, folder: Path, fps: float = 10.0, loop: bool = False):
        if not 0 < float(fps) <= 1000:  # also NaN; 0 would divide by zero at the first frame
            raise EdgeAffectError(f"--folder-fps {fps:g}: an image folder plays at more than 0 and at most 1000 fps")
        self.folder, self.fps, self.loop = Path(folder), float(fps), loop
        self.name = str(folder)
        self._files: list[Path] = []
        self._i = 0

    def open(self) -> None:
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.frame_count = len(self._files)
        if not self._files:
            raise EdgeAffectError(f"{self.folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def read(self) -> Read:
        if self._i >= len(self._files):
            if not self.loop:
                return Read(END)
        f = self._files[self._i % len(self._files)]
        t = self._i / self.fps
        self._i += 1
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        return Read(OK if valid_frame(img) else CORRUPT, img, t)

    def close(self) -> None:
        pass


def open_source(spec: str, loop: bool = False, folder_fps: float = 10.0, decode_threads: int | None = None) -> Source:
    """'0' -> camera 0; a folder -> images; a URL -> stream; otherwise a video file (``decode_threads``: see
    :class:`CaptureSource`)."""
    s = str(spec)
    if s.isdigit():
        return CaptureSource(int(s))
    if "://" in s:
        return CaptureSource(s)
    p = Path(s)
    if p.is_dir():
        return FolderSource(p, folder_fps, loop)
    if not p.exists():
        raise EdgeAffectError(f"source {s} does not exist (give a camera index, a video file, an image folder or a URL)")
    return CaptureSource(s, loop=loop, decode_threads=decode_threads)


class Reconnecting:
    """Wrap a live source: on a lost stream close it and reopen with exponential backoff.

    ``on_status(message)`` is called for each state change (shown on screen and logged).
    Gives up after ``max_retries`` failed opens in a row (``None``: never).
    """

    def __init__(self, source: Source, on_status: Callable[[str], None] = lambda m: None,
                 base_delay: float = 0.5, max_delay: float = 8.0, max_retries: int | None = 10,
                 sleep: Callable[[float], None] = time.sleep, stop: Callable[[], bool] = lambda: False):
        if max_retries is not None and max_retries < 0:
            raise EdgeAffectError(f"--reconnect-retries {max_retries}: give 0 (never give up) or more")
        self.source, self.on_status = source, on_status
        self.base_delay, self.max_delay, self.max_retries = base_delay, max_delay, max_retries
        self.sleep, self.stop = sleep, stop
        self.reconnects = 0
        self.fps, self.live, self.name = source.fps, source.live, source.name

    def open(self) -> None:
        self.source.open()
        self.fps = self.source.fps

    def read(self) -> Read:
        r = self.source.read()
        if r.status != LOST:
            return r
        return self._reconnect()

    def _reconnect(self) -> Read:
        delay, tries = self.base_delay, 0
        self.on_status(f"stream lost: {self.name}; reconnecting")
        log.warning("stream lost: %s; reconnecting", self.name)
        while not self.stop():
            self.source.close()
            self.sleep(delay)
            tries += 1
            try:
                self.source.open()
                r = self.source.read()
                if r.status != LOST:
                    self.reconnects += 1
                    self.on_status("")
                    log.warning("reconnected to %s after %d attempt(s)", self.name, tries)
                    return r
            except EdgeAffectError:
                pass
            if self.max_retries is not None and tries >= self.max_retries:
                msg = f"giving up on {self.name} after {tries} failed reconnects"
                self.on_status(msg)
                log.error(msg)
                break
            msg = f"reconnecting to {self.name}: attempt {tries} failed, next in {min(delay * 2, self.max_delay):.1f}s"
            self.on_status(msg)
            log.warning(msg)
            delay = min(delay * 2, self.max_delay)
        return Read(END)

    def close(self) -> None:
        self.source.close()


class MicAudio:
    """Live microphone audio (sounddevice, optional extra ``mic``) for audio-visual models on a camera.

    The PortAudio callback appends blocks on its own thread; ``window()`` hands the pipeline every
    sample captured since the previous call (the pipeline's ring keeps the newest seconds), so audio
    stays aligned with the frames by arrival time. Overflows reported by PortAudio are counted.
    """

    def __init__(self, sample_rate: int, device: int | str | None = None, block_seconds: float = 0.05):
        try:
            import sounddevice
        except (ImportError, OSError):  # OSError: the package is there but PortAudio is not
            from ..errors import MissingDependencyError

            raise MissingDependencyError("sounddevice", "mic", "microphone input") from None
        self.sr = int(sample_rate)
        self.overflows = 0
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()
        try:
            self._stream = sounddevice.InputStream(samplerate=self.sr, channels=1, dtype="float32", device=device,
                                                   blocksize=max(1, int(self.sr * block_seconds)),
                                                   callback=self._callback)
            self._stream.start()
        except Exception as exc:  # PortAudioError and friends: no device, busy device, bad rate
            raise EdgeAffectError(f"cannot open microphone {device if device is not None else '(default)'}: {exc}") from None

    def _callback(self, indata, frames, time_info, status) -> None:
        if status:
            self.overflows += 1
        with self._lock:
            self._blocks.append(np.array(indata[:, 0], np.float32))

    def window(self, end_time: float, seconds: float) -> np.ndarray:
        """Every sample captured since the last call (``end_time``/``seconds`` are for file audio)."""
        with self._lock:
            blocks, self._blocks = self._blocks, []
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    def close(self) -> None:
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            stream.stop()
            stream.close()


class FileAudio:
    """The source file's audio track (PyAV), decoded once; windows are cut by media time."""

    def __init__(self, path: str | Path, sample_rate: int, resample: str = "pyav"):
        self.sr = int(sample_rate)
        self.samples = read_audio(path, self.sr, resample)   # the resampler the model was trained with
        self.period: float | None = None

    def window(self, end_time: float, seconds: float) -> np.ndarray:
        """The ``seconds`` of audio ending at ``end_time`` (silence before the start / after the end).

        With ``period`` set (a looped file: the video's duration) media time wraps around, so every
        pass over the file hears its audio again.
        """
        n = int(round(seconds * self.sr))
        end = int(round(end_time * self.sr))
        pos = np.arange(end - n, end)
        if self.period:
            pos = np.where(pos >= 0, pos % max(1, int(round(self.period * self.sr))), pos)
        ok = (pos >= 0) & (pos < len(self.samples))
        out = np.zeros(n, np.float32)
        out[ok] = self.samples[pos[ok]]
        return out
