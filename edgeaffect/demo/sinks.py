"""Where annotated frames and predictions go: a window, an mp4 file, a JSONL file (and the web page).

The mp4 and JSONL are written under temporary names and renamed on close, and
closed on every way out (end of input, Ctrl-C, SIGTERM), so the mp4 is always
playable and the JSONL holds one complete line per processed frame.
"""
from __future__ import annotations

import json
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.media import has_audio, pyav
from ..errors import EdgeAffectError
from ..lazy import lazy_import

av = lazy_import("av", "media")
cv2 = lazy_import("cv2", "")

log = logging.getLogger("edgeaffect.demo")


class Mp4Sink:
    """H.264 mp4 written frame by frame with PyAV; the file appears (renamed) when closed, with the source
    file's audio track (``audio_from``) when it has one."""

    def __init__(self, path: str | Path, fps: float | Callable[[], float], audio_from: str | Path | None = None):
        """``fps``: the rate, or where to read it when the first frame comes (a source knows its own rate only
        once it is opened, after the sinks are built: files were all written at 30 fps)."""
        self.path, self.fps, self.audio_from = Path(path), fps, audio_from
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix or '.mp4'}")
        self._out = self._stream = None
        self.frames = 0

    def write(self, frame: np.ndarray, record: dict | None = None) -> None:
        av = pyav("writing the demo's H.264 --output")
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame.shape[:2]
            self._out = av.open(str(self._tmp), mode="w")
            fps = self.fps() if callable(self.fps) else self.fps
            self._rate = Fraction(fps).limit_denominator(1001)
            s = self._out.add_stream("libx264", rate=self._rate)
            s.width, s.height, s.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
            s.options = {"crf": "23", "preset": "veryfast", "tune": "zerolatency"}
            s.thread_count = 1
            self._stream = s
        s = self._stream
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: s.height, : s.width]), format="bgr24")
        for pkt in s.encode(vf):
            self._out.mux(pkt)
        self.frames += 1

    def close(self) -> None:
        if self._out is None:
            return
        for pkt in self._stream.encode():
            self._out.mux(pkt)
        seconds = self.frames / float(self._rate)
        self._out.close()
        self._out = None
        if self.audio_from is not None:
            self._add_audio(seconds)
        os.replace(self._tmp, self.path)

    def _add_audio(self, seconds: float) -> None:
        """Copy the source's audio (its first ``seconds``, the length of the video written) beside the video;
        a source without audio, or a track the mp4 cannot carry, leaves the video alone (said in one line)."""
        src = Path(self.audio_from)
        if not src.is_file() or not has_audio(src):
            return
        muxed = self._tmp.with_name(f".{self.path.stem}.av{self._tmp.suffix}")
        try:
            mux_audio(self._tmp, src, muxed, seconds)
        except Exception as exc:   # the annotated video is still worth having without its sound
            log.warning("%s: written without the source's audio (%s: %s)", self.path, type(exc).__name__, exc)
            muxed.unlink(missing_ok=True)
            return
        os.replace(muxed, self._tmp)


def mux_audio(video: Path, audio_src: Path, out: Path, seconds: float) -> None:
    """``out`` = ``video``'s stream and ``audio_src``'s first audio stream up to ``seconds``, both copied."""
    with av.open(str(video)) as vin, av.open(str(audio_src)) as ain, av.open(str(out), mode="w") as dst:
        v, a = vin.streams.video[0], ain.streams.audio[0]
        vo, ao = dst.add_stream_from_template(v), dst.add_stream_from_template(a)
        for pkt in vin.demux(v):
            if pkt.dts is not None:
                pkt.stream = vo
                dst.mux(pkt)
        for pkt in ain.demux(a):
            if pkt.dts is None:
                continue
            if pkt.pts is not None and float(pkt.pts * a.time_base) >= seconds:
                break
            pkt.stream = ao
            dst.mux(pkt)


class JsonlSink:
    """One JSON object per processed frame, flushed line by line; renamed into place on close."""

    records_only = True   # takes the records, never the drawn frame: no overlay is drawn for it

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._f = open(self._tmp, "w", encoding="utf-8")
        self.lines = 0

    def write(self, frame: np.ndarray | None, record: dict) -> None:
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()
        self.lines += 1

    def close(self) -> None:
        if self._f is None:
            return
        self._f.close()
        self._f = None
        os.replace(self._tmp, self.path)


def gui_available() -> bool:
    """Whether this OpenCV build can open a window (opencv-python-headless cannot)."""
    info = cv2.getBuildInformation()
    for line in info.splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("NONE", "")
    return False


class WindowSink:
    """An OpenCV window; 'q' or Esc asks the demo to stop."""

    live = True  # also shown while a stream is down (status frames)

    def __init__(self, title: str = "edgeaffect demo"):
        if not gui_available():
            raise EdgeAffectError("this OpenCV build has no GUI support (opencv-python-headless): "
                                  "use --headless with --output/--jsonl, or --serve 127.0.0.1:8080 for a web page")
        self.title = title
        self.quit = False

    def write(self, frame: np.ndarray, record: dict | None = None) -> None:
        cv2.imshow(self.title, frame)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit = True

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class ProgressSink:
    """A rich progress bar over the frames of a file (headless runs), so long files show where they are."""

    records_only = True   # counts frames, never looks at them

    def __init__(self, total=None, console=None, label: str = "demo"):
        """``total``: the frame count, or a callable giving it once the source is open."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[fps]}"), TimeRemainingColumn(), console=console,
                                  transient=True)
        self._total = total
        self._task = self._progress.add_task(label, total=None, fps="")
        self._progress.start()
        self._n = 0

    def write(self, frame: np.ndarray | None, record: dict) -> None:
        self._n += 1
        if self._n == 1 and self._total is not None:
            total = self._total() if callable(self._total) else self._total
            self._progress.update(self._task, total=total or None)
        if self._n % 10 == 0:
            self._progress.update(self._task, completed=self._n, fps=f"{len(record.get('faces', []))} face(s)")

    def close(self) -> None:
        self._progress.stop()
